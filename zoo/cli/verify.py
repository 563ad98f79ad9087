"""``zoo verify``: re-verify built or downloaded artifacts against PyTorch, as a matrix."""

from __future__ import annotations


import click

from ..errors import ProviderUnavailableError, ZooError
from .common import (artifacts_option, batch_sizes_option, emit_json, json_option, names_or_all, no_record_option,
                     precision_option, progress, providers_option, runtimes_option, fit_table)


# Backend names as the records spell them -> the table's short headers (the records keep the full ones).
_SHORT = (("onnxruntime:", "ort:"), ("CPUExecutionProvider", "cpu"), ("CUDAExecutionProvider", "cuda"),
          ("TensorrtExecutionProvider", "trt"), (":disabled", ":O0"), (":all", ""), ("openvino", "ov"),
          ("reference", "ref"))
LEGEND = "cells: max abs error of a pass, FAIL, or n/a (unavailable); --json has every record in full"
_TERMS = (("ort", "ort = ONNX Runtime (:O0 graph optimizations off)"), ("ref", "ref = ONNX reference evaluator"),
          ("ov", "ov = OpenVINO"), ("@cuda", "@cuda = checked against PyTorch on CUDA"))


def legend(columns: list[tuple[str, str]]) -> str:
    """What the cells and the short headers that appear mean (lines under 100 columns)."""
    heads = [h for _, h in columns]
    used = [text for term, text in _TERMS if any(h.startswith(term) or term in h for h in heads)]
    import textwrap

    return LEGEND + ("\n" + textwrap.fill(", ".join(used), 100) if used else "")


def short_backend(name: str) -> str:
    for long, short in _SHORT:
        name = name.replace(long, short)
    return name


def _cell(r: dict) -> str:
    err = r.get("max_abs_error")
    if r["verdict"] == "pass":
        return "pass" if err is None else f"{err:.1e}"
    if r["verdict"] == "fail":
        return "FAIL" if err is None else f"FAIL {err:.1e}"
    return "n/a" if r["verdict"] == "unavailable" else r["verdict"]


def matrix_rows(results: dict[str, list[dict]]) -> tuple[list[dict], list[tuple[str, str]]]:
    """One row per model and precision, one column per backend (short names): the worst max-abs
    error, or the verdict. Narrow enough for a terminal with a handful of backends."""
    columns: list[str] = []
    rows: dict[tuple[str, str], dict] = {}
    for name, recs in results.items():
        for r in recs:
            col = short_backend(r["backend"]) + ("@cuda" if r.get("reference") == "torch-cuda" else "")
            if col not in columns:
                columns.append(col)
            rows.setdefault((name, r["precision"]), {"model": name, "precision": r["precision"]})[col] = _cell(r)
        if not recs:
            rows.setdefault((name, "-"), {"model": name, "precision": "-"})
    return list(rows.values()), [("model", "model"), ("precision", "precision")] + [(c, c) for c in columns]


@click.command("verify")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every model in the manifest.")
@artifacts_option(help="Folder holding manifest.json and the model folders (a build or a pull).")
@precision_option(None, help="Comma list of fp32, int8, fp16 [default: every precision each model was built with].")
@providers_option
@runtimes_option
@batch_sizes_option(None, help="Comma list of batch sizes [default: 1,2,7,64].")
@no_record_option
@json_option
def verify_cmd(names, all_, artifacts, precisions, providers, runtimes, batch_sizes, no_record, as_json):
    """Re-verify artifacts against PyTorch: every backend, batch size and input distribution.

    The PyTorch model is rebuilt from the manifest entry and its seed. A provider or runtime named
    with --providers/--runtimes that is not available here exits 3 before any work (it is never
    replaced by the CPU); a failed check exits 1.

    \b
    Examples:
      zoo verify --all
      zoo verify dense_b0 --runtimes openvino,tract --batch-sizes 1,7
      zoo verify --all --runtimes c,cpp
      zoo verify dense_b0 --precision int8 --providers cuda --json
    """
    from ..builder.verification import checked_names, verify_models

    names_or_all(names, all_)
    checked_names(artifacts, None if all_ else list(dict.fromkeys(names)), progress)  # bad names: before any note
    if runtimes is None:  # the defaults are what is available here: say what that leaves out, as zoo build does
        from ..builder.steps import runtime_reasons

        for name, why in runtime_reasons().items():
            if why:
                progress(f"note: no parity on {name}: {why}")
    results = verify_models(artifacts, None if all_ else list(dict.fromkeys(names)), providers=providers,
                            runtimes=runtimes, batch_sizes=batch_sizes, precisions=precisions,
                            record=not no_record, progress=progress)
    if as_json:
        emit_json(results)
    else:
        rows, cols = matrix_rows(results)
        click.echo(fit_table(rows, cols, keys=2))
        click.echo(legend(cols))
    failed = [(n, r) for n, recs in results.items() for r in recs if r["verdict"] == "fail"]
    for n, r in results.items():
        for rec in r:
            if rec["verdict"] == "unavailable":
                progress(f"{n}: {rec['backend']} unavailable: {rec['reason']}")
    if failed:
        n, r = failed[0]
        raise ZooError(f"{len(failed)} parity check(s) failed; first: {n} {r['backend']}: {r['reason']}")
    gone = [(n, r) for n, recs in results.items() for r in recs if r["verdict"] == "unavailable"]
    if gone:  # only a backend that was named can be unavailable (the defaults are the available ones)
        n, r = gone[0]
        raise ProviderUnavailableError(f"{len(gone)} backend(s) unavailable; first: {n} {r['backend']}: {r['reason']}")
