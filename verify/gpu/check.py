"""The GPU check, stage by stage: preflight, build, parity, ONNX Runtime timing, PyTorch timing.

Parity of each model starts as soon as it is built (the bigger models are still building in other
processes); timing waits until every build is done, so that no export competes with it for the
CPU that launches the GPU's work. ``torch.compile`` comes last and stops at the time limit: what
it could not do is said, never left out silently.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ProviderUnavailableError
from ...fsutil import atomic_write_json
from ...model.scaling import VARIANTS
from ...spec import resolve_provider
from ..matrix import DEFAULT_BATCH_SIZES, MatrixOptions, run_matrix
from . import env, report
from .build import Built, build_models
from .timing import FAST, MODES, Measured, ort_modes, torch_modes

DEFAULT_MODELS = tuple(v.name for v in (VARIANTS.values() if isinstance(VARIANTS, dict) else VARIANTS))
TIMING_BATCHES = (1, 256)
BUILD_DONE = "build-done.json"  # written into --cache when a --build-only run ends
PRECISIONS = ("fp32", "fp16")


@dataclass
class CheckOptions:
    out: Path
    models: tuple[str, ...] = DEFAULT_MODELS
    provider: str = "cuda"
    input_dim: int | None = None
    precisions: tuple[str, ...] = PRECISIONS
    parity_batches: tuple[int, ...] = DEFAULT_BATCH_SIZES
    timing_batches: tuple[int, ...] = TIMING_BATCHES
    compile_backend: str | None = "inductor"
    jobs: int = 1
    cache: str | None = None  # a folder on the GPU machine where built models are kept between runs
    time_limit_s: float = 240.0  # after this, optional work (torch.compile, TensorRT) is skipped
    timing: object = FAST


@dataclass
class Stages:
    """Wall-clock seconds per stage, printed as each ends."""

    start: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def done(self, name: str, since: float) -> None:
        self.seconds[name] = round(time.perf_counter() - since, 2)
        env.say(f"[gpu-check] stage {name}: {self.seconds[name]:.1f} s (total {self.elapsed():.1f} s)")


def run_check(opts: CheckOptions) -> dict:
    """Run every stage and write the records and the summary into ``opts.out``; returns the result."""
    provider = resolve_provider(opts.provider)
    if provider not in (env.CPU, env.CUDA):
        from ...errors import InputError

        raise InputError(f"the GPU check runs on cuda (or cpu for a dry run), not {opts.provider!r}")
    stages = Stages()
    if provider == env.CPU:
        env.say("=" * 78 + f"\n[gpu-check] {env.NO_GPU_BANNER}\n" + "=" * 78)
    t = time.perf_counter()
    preflight = env.preflight(provider)  # refuses here, before any work, if the provider is not real
    trt_ok, trt_line = env.tensorrt_status() if provider == env.CUDA else (False, "TensorRT: not tried on a CPU run")
    env.say(f"[gpu-check] onnxruntime {preflight['onnxruntime']} from {preflight['onnxruntime_file']}; "
            f"providers {preflight['available_providers']}")
    env.say(f"[gpu-check] {trt_line}")
    machine = env.machine(provider)
    env.say(f"[gpu-check] machine: {machine.get('gpu') or 'no GPU'}; {machine.get('cpu')}")
    stages.done("preflight", t)
    device = "cuda" if provider == env.CUDA else "cpu"
    backends = [env.backend_for(provider)]
    notes: list[str] = [trt_line]
    result = {"provider": provider, "gpu_used": provider != env.CPU, "preflight": preflight, "tensorrt": trt_line,
              "machine": machine, "options": report.options_record(opts), "stages_s": stages.seconds,
              "notes": notes, "refused": [], "failed": [], "models": {}}

    # Build (in parallel processes) and, as each model arrives, its parity (in this process).
    t = time.perf_counter()
    built: list[Built] = []
    parity_s = [0.0]

    def on_built(b: Built):
        t1 = time.perf_counter()
        result["models"][b.name] = report.model_record(b)
        try:
            result["models"][b.name]["parity"] = parity(b, backends, opts, trt_ok, stages, notes)
        except Exception as e:  # one model's crash (a CUDA error, say) must not lose the others' results
            result["failed"].append(f"{b.name}: parity crashed: {type(e).__name__}: {str(e).strip()[:300]}")
            env.say(f"[gpu-check] {result['failed'][-1]}")
        parity_s[0] += time.perf_counter() - t1

    with ThreadPoolExecutor(max_workers=1) as parity_worker:  # one model's parity at a time, in order
        pending = []
        for b in build_models(list(opts.models), input_dim=opts.input_dim, precisions=opts.precisions,
                              jobs=opts.jobs, cache=opts.cache, failed=result["failed"],
                              progress=lambda m: env.say(f"[gpu-check] {m}")):
            built.append(b)
            pending.append(parity_worker.submit(on_built, b))
        for p in pending:
            p.result()
    order = {n: i for i, n in enumerate(opts.models)}
    built.sort(key=lambda b: order[b.name])
    result["models"] = {b.name: result["models"][b.name] for b in built}
    stages.done("build+parity", t)
    stages.seconds["parity_only"] = round(parity_s[0], 2)

    t = time.perf_counter()
    ort_times = {}
    for b in built:
        for precision in opts.precisions:
            xs = report.timing_inputs(b, opts.timing_batches)
            try:
                ort_times[(b.name, precision)] = ort_modes(b.files[precision], xs, provider=provider,
                                                           input_name=b.request.spec.input_name,
                                                           output_name=b.request.spec.output_name,
                                                           options=opts.timing)
            except ProviderUnavailableError as e:  # the session left the provider: nothing of it is reported
                result["refused"].append(f"{b.name} {precision}: {e}")
                ort_times[(b.name, precision)] = {(n, mode): Measured(reason=f"refused: {e}")
                                                  for n in xs for mode in MODES}
        env.say(f"[gpu-check] timed {b.name} on {provider} ({time.perf_counter() - t:.1f} s)")
    stages.done("onnxruntime timing", t)

    t = time.perf_counter()
    torch_times = {}
    for b in built:
        for precision in opts.precisions:
            torch_times[(b.name, precision)] = torch_modes(b.model, report.timing_inputs(b, opts.timing_batches),
                                                           device=device, precision=precision, compile_backend=None,
                                                           options=opts.timing)
    stages.done("torch eager timing", t)

    t = time.perf_counter()
    if opts.compile_backend is not None:  # every model at fp32 first: breadth before the time runs out
        for precision in opts.precisions:
            for b in built:
                compiled = torch_modes(b.model, report.timing_inputs(b, opts.timing_batches), device=device,
                                       precision=precision, compile_backend=opts.compile_backend, options=opts.timing,
                                       can_compile=lambda: stages.elapsed() < opts.time_limit_s, eager=False)
                torch_times[(b.name, precision)].update(compiled)
                env.say(f"[gpu-check] torch.compile {b.name} {precision} ({time.perf_counter() - t:.1f} s)")
    stages.done("torch.compile timing", t)

    for b in built:
        mod = result["models"][b.name]
        mod["latency"], mod["not_measured"] = report.latency_records(b, opts, provider, machine, ort_times,
                                                                     torch_times)
    skipped = report.count_skipped(result)
    if skipped:
        notes.append(f"{skipped} torch.compile measurements skipped at the time limit ({opts.time_limit_s:g} s)")
    result["total_s"] = round(stages.elapsed(), 2)
    report.write(opts.out, result)
    env.say(f"[gpu-check] wrote {opts.out} in {result['total_s']:.1f} s")
    return result


def build_only(opts: CheckOptions) -> list[str]:
    """Build every model into ``opts.cache`` and stop: no provider is needed yet, so this can run
    (in the background) while onnxruntime-gpu is still arriving in parts."""
    if not opts.cache:
        from ...errors import InputError

        raise InputError("--build-only needs --cache DIR (where the check finds the models later)")
    stages = Stages()
    t = time.perf_counter()
    failed: list[str] = []
    names: list[str] = []
    try:
        names = [b.name for b in build_models(list(opts.models), input_dim=opts.input_dim, precisions=opts.precisions,
                                              jobs=opts.jobs, cache=opts.cache, failed=failed,
                                              progress=lambda m: env.say(f"[gpu-check] {m}"))]
    finally:  # what a later run waits for, whatever happened (docs/gpu.md, command C)
        atomic_write_json(Path(opts.cache) / BUILD_DONE, {"built": names, "failed": failed})
    stages.done("build", t)
    if failed:
        from ...errors import ZooError

        raise ZooError(f"{len(failed)} of {len(opts.models)} builds failed: {failed[0]}")
    return names


def parity(b: Built, backends, opts: CheckOptions, trt_ok: bool, stages: Stages, notes: list) -> list[dict]:
    """The matrix of one model at each precision: the provider against PyTorch on the CPU and (where
    PyTorch sees a GPU) on CUDA; TensorRT's provider too while time is left."""
    records = []
    for precision in opts.precisions:
        use = list(backends)
        if trt_ok:
            if stages.elapsed() < opts.time_limit_s:
                use.append(env.backend_for("tensorrt"))
            elif not any("TensorRT parity" in n for n in notes):
                notes.append(f"TensorRT parity stopped at the time limit, from {b.name} {precision} on")
        spec = b.request.spec
        recs = run_matrix(b.model, b.files[precision], input_dim=b.input_dim, seed=b.request.seed,
                          input_name=spec.input_name, output_name=spec.output_name, precision=precision,
                          options=MatrixOptions(batch_sizes=tuple(opts.parity_batches), backends=use),
                          progress=lambda m: env.say(f"[gpu-check] {b.name} {m}"))
        records += [report.label_parity(r) for r in recs]
    return records
