"""The GPU check's output: the manifest's parity and latency records per model, and a summary.

One folder: ``gpu-check.json`` (everything: machine, preflight, stage times, notes, per model its
``parity`` and ``latency`` records as the manifest stores them and what was not measured, with
why), ``parity.json`` and ``latency.json`` (``{model: [records]}``, ready to merge into a
manifest's entries) and ``summary.md``. A CPU dry run says so in each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...bench.latency import bench_input, default_threads, speedup
from ...fsutil import atomic_write_bytes, atomic_write_json
from .build import Built
from .env import CUDA, CUDA_OPTIONS, NO_GPU_BANNER
from .timing import MODES, SUFFIX

STRICT_FP32 = "strict float32 (use_tf32=0, as PyTorch's default), not ONNX Runtime's default TF32"


def options_record(opts) -> dict:
    return {"models": list(opts.models), "provider": opts.provider, "input_dim": opts.input_dim,
            "precisions": list(opts.precisions), "parity_batches": list(opts.parity_batches),
            "timing_batches": list(opts.timing_batches), "compile_backend": opts.compile_backend, "jobs": opts.jobs,
            "time_limit_s": opts.time_limit_s, "warmup_runs": opts.timing.warmup_runs,
            "max_runs": opts.timing.max_runs, "time_budget_s": opts.timing.time_budget_s}


def model_record(b: Built) -> dict:
    return {"input_dim": b.input_dim, "params": b.params, "flops": b.flops, "build_s": round(b.seconds, 2),
            "build_timings_s": {k: round(v, 2) for k, v in b.timings_s.items()},
            "file_bytes": {p: len(d) for p, d in b.files.items()}, "parity": [], "latency": [], "not_measured": []}


def timing_inputs(b: Built, batches) -> dict[int, np.ndarray]:
    """The same seeded inputs as ``zoo bench`` (``zoo.bench.latency.bench_input``)."""
    return {int(n): bench_input(b.input_dim, int(n)) for n in batches}


def label_parity(rec: dict) -> dict:
    if rec.get("provider") == CUDA and rec["precision"] == "fp32" and not rec.get("label"):
        rec["label"] = STRICT_FP32
    return rec


def latency_records(b: Built, opts, provider: str, machine: dict, ort_times: dict,
                    torch_times: dict) -> tuple[list[dict], list[dict]]:
    """``(records, not measured)`` of one model: the manifest's latency records (one per precision,
    batch and ONNX Runtime mode, PyTorch eager and torch.compile beside each), and each
    configuration that could not be timed, with why."""
    import onnxruntime as ort

    records, skipped = [], []
    threads = default_threads()
    for precision in opts.precisions:
        ort_m, torch_m = ort_times[(b.name, precision)], torch_times[(b.name, precision)]
        for batch in opts.timing_batches:
            eager, compiled = torch_m[(batch, "eager")], torch_m.get((batch, "compile"))
            for mode in MODES:
                m = ort_m[(batch, mode)]
                backend = f"onnxruntime:{provider}:all{SUFFIX[mode]}"
                if m.summary is None:
                    skipped.append({"backend": backend, "precision": precision, "batch_size": batch,
                                    "reason": m.reason})
                    continue
                p50_s = m.summary["p50_ms"] / 1e3
                records.append({
                    "backend": backend, "runtime": "onnxruntime", "version": ort.__version__, "provider": provider,
                    "optimization": "all", "provider_options": dict(CUDA_OPTIONS) if provider == CUDA else {},
                    "io_binding": mode != "plain", "cuda_graph": mode == "cudagraph",
                    "precision": precision, "batch_size": int(batch), "threads": int(threads),
                    "session_create_ms": float(m.session_create_ms or 0.0), "warmup_runs": int(m.warmup_runs),
                    "runs": int(m.runs), **m.summary, "time_budget_s": float(opts.timing.time_budget_s),
                    "max_runs": int(opts.timing.max_runs),
                    "throughput_sps": float(batch / p50_s) if p50_s > 0 else 0.0,
                    "gflops_per_s": float(b.flops * batch / p50_s / 1e9) if p50_s > 0 else 0.0,
                    "output_matches_plain": m.matches_plain,
                    "torch_device": "cuda" if provider == CUDA else "cpu",
                    "torch_dtype": "float16" if precision == "fp16" else "float32",
                    **_torch_fields(eager, "torch", m), **_torch_fields(compiled, "torch_compile", m),
                    "torch_compile_backend": opts.compile_backend,
                    "label": STRICT_FP32 if provider == CUDA and precision == "fp32" else None,
                    "machine": machine})
    return records, skipped


def _torch_fields(m, prefix: str, ort_m) -> dict:
    """``<prefix>_p50_ms`` and co. of a PyTorch measurement, and how many times faster ONNX Runtime is
    (``speedup_vs_<prefix>``: PyTorch p50 / ONNX Runtime p50, above 1 is faster, as everywhere)."""
    if m is None or m.summary is None:
        return {f"{prefix}_p50_ms": None, f"speedup_vs_{prefix}": None,
                f"{prefix}_note": None if m is None else m.reason}
    s = m.summary
    out = {f"{prefix}_p50_ms": s["p50_ms"], f"{prefix}_p90_ms": s["p90_ms"], f"{prefix}_mean_ms": s["mean_ms"],
           f"{prefix}_runs": m.runs,
           f"speedup_vs_{prefix}": speedup(s["p50_ms"], ort_m.summary["p50_ms"])}
    if prefix == "torch_compile":
        out["torch_compile_first_call_ms"] = m.session_create_ms
    return out


def schema_problems(result: dict) -> list[str] | None:
    """Each parity and latency record checked against the manifest schema's definitions; None where
    jsonschema is not installed (the GPU machine has only the toolchain)."""
    try:
        import jsonschema
    except ImportError:
        return None
    from ...builder.manifest import schema

    defs = schema()["$defs"]
    problems = []
    for kind in ("parity", "latency"):
        validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": defs})
        for name, m in result["models"].items():
            for i, rec in enumerate(m[kind]):
                err = jsonschema.exceptions.best_match(validator.iter_errors(rec))
                if err is not None:
                    where = "/".join(str(p) for p in err.absolute_path) or "(record)"
                    problems.append(f"{name} {kind}[{i}] {where}: {err.message[:200]}")
    return problems


def write(out: Path, result: dict) -> None:
    """Every file of the check into ``out`` (each atomically; the summary last)."""
    out = Path(out)
    problems = schema_problems(result)
    result["schema_check"] = ("not run: jsonschema is not installed here" if problems is None
                              else "passed" if not problems else f"{len(problems)} invalid records")
    result["schema_problems"] = problems or []
    atomic_write_json(out / "gpu-check.json", result)
    for kind in ("parity", "latency"):
        atomic_write_json(out / f"{kind}.json", {n: m[kind] for n, m in result["models"].items()})
    atomic_write_bytes(out / "summary.md", summary(result).encode())


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary(result: dict) -> str:
    """A short Markdown page: the machine, parity verdicts, p50 latencies side by side, notes."""
    m = result["machine"]
    gpu = m.get("gpu") if result["gpu_used"] else None
    lines = [f"# GPU check: {gpu or 'NO GPU (a dry run on the CPU provider)'}", ""]
    if not result["gpu_used"]:
        lines += [f"> **{NO_GPU_BANNER}**", ""]
    pre = result["preflight"]
    lines += [f"- provider: `{result['provider']}`; onnxruntime {pre['onnxruntime']} "
              f"(device {pre['device']}; providers {', '.join(pre['available_providers'])})",
              f"- PyTorch {m.get('torch')}, CUDA {m.get('cuda', '-')}, cuDNN {m.get('cudnn', '-')}; CPU {m.get('cpu')}",
              f"- {result['tensorrt']}",
              f"- stages (s): " + ", ".join(f"{k} {v:g}" for k, v in result["stages_s"].items())
              + f"; total {result.get('total_s', 0):g}",
              f"- records checked against the manifest schema: {result.get('schema_check', '-')}", "",
              "## Parity", "",
              "| model | precision | backend | reference | verdict | max abs error | atol / rtol |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, mod in result["models"].items():
        for r in mod["parity"]:
            err = "-" if r.get("max_abs_error") is None else f"{r['max_abs_error']:.2e}"
            verdict = r["verdict"] + (f" ({r['reason'][:80]})" if r["verdict"] != "pass" and r.get("reason") else "")
            lines.append(f"| {name} | {r['precision']} | {r['backend']} | {r['reference']} | {verdict} | {err} | "
                         f"{r['atol']:g} / {r['rtol']:g} |")
    lines += ["", "## Latency, p50 in ms", "",
              "ONNX Runtime (plain `run` with host arrays; I/O binding with device arrays; CUDA graph replay) "
              "against PyTorch on the same device (eager; `torch.compile`). Ratio: best ONNX Runtime / eager.", "",
              "| model | precision | batch | ORT run | ORT I/O binding | ORT CUDA graph | torch eager | torch.compile "
              "| best ORT, x faster than eager |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, mod in result["models"].items():
        cells: dict[tuple, dict] = {}
        for r in mod["latency"]:
            cells.setdefault((r["precision"], r["batch_size"]), {})[r["backend"].rsplit(":", 1)[-1]] = r
        for (precision, batch), c in cells.items():
            any_rec = next(iter(c.values()))
            ort_best = min(r["p50_ms"] for r in c.values())
            eager = any_rec.get("torch_p50_ms")
            ratio = f"{speedup(eager, ort_best):.2f}x" if eager and ort_best else "-"
            lines.append(f"| {name} | {precision} | {batch} | {_ms(c.get('all', {}).get('p50_ms'))} | "
                         f"{_ms(c.get('iobinding', {}).get('p50_ms'))} | {_ms(c.get('cudagraph', {}).get('p50_ms'))} | "
                         f"{_ms(eager)} | {_ms(any_rec.get('torch_compile_p50_ms'))} | {ratio} |")
    notes = [f"**REFUSED** (the session left the provider; nothing of it is reported): {r}"
             for r in result.get("refused", [])] + [f"**FAILED**: {f}" for f in result.get("failed", [])] \
        + list(result["notes"])
    for name, mod in result["models"].items():
        reasons = sorted({s["reason"] for s in mod["not_measured"]})
        notes += [f"{name}: not measured: {r}" for r in reasons]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def count_skipped(result: dict) -> int:
    return sum(1 for m in result["models"].values() for r in m["latency"]
               if (r.get("torch_compile_note") or "").startswith("skipped"))
