"""Latency of zoo artifacts: ONNX Runtime per provider, precision and batch size, PyTorch beside it.

One measurement (:func:`time_runs`) is: warm-up runs that are not counted, then timed runs that
stop at ``max_runs`` *or* when ``time_budget_s`` is spent, whichever comes first (at least one
timed run). Percentiles are numpy's linear interpolation over the timed runs, so
``p50 <= p90 <= p99`` always. Throughput and achieved GFLOP/s are taken from the median run.

A latency record (:func:`measure_model`) holds session creation time, the run statistics, the
thread count, the machine, and PyTorch eager on the same inputs with the same threads (the
``torch_*`` fields and ``speedup_vs_torch`` = PyTorch p50 / ONNX Runtime p50: how many times faster
than PyTorch ONNX Runtime is, above 1 is faster; the one ratio convention of the zoo). Numbers are floats; counts are integers.

``--roofline`` (:mod:`zoo.bench.roofline`) puts each record against this machine's measured fp32
GEMM peak and memory read bandwidth.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..spec import GPU_PROVIDERS, PROVIDER_ALIASES, resolve_provider  # noqa: F401 - re-exported
from ..versions import dist_version

from ..verify.backends import OrtBackend
from ..errors import InputError

DEFAULT_BATCH_SIZES = (1, 32, 256)
# Fields that identify a latency record: a new measurement replaces the old one with the same key.
RECORD_KEY = ("backend", "precision", "batch_size", "threads")


@dataclass(frozen=True)
class LatencyOptions:
    """How long to measure. The time budget applies to each (artifact, provider, precision, batch)
    and to each side (ONNX Runtime, PyTorch) separately; warm-up is bounded by it too."""

    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    warmup_runs: int = 5
    max_runs: int = 200
    time_budget_s: float = 3.0
    threads: int | None = None  # None: this machine's physical cores (see default_threads)
    torch: bool = True  # PyTorch eager side by side
    optimization: str = "all"
    seed: int = 0
    measured_by: str = "bench"  # recorded with each latency: "build" (zoo build's short run) or "bench"

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1
                                       for b in self.batch_sizes):
            raise InputError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.warmup_runs < 0:
            raise InputError(f"warm-up runs must be >= 0, got {self.warmup_runs}")
        if self.max_runs < 1:
            raise InputError(f"runs must be >= 1, got {self.max_runs}")
        if not self.time_budget_s > 0:
            raise InputError(f"the time budget must be > 0 seconds, got {self.time_budget_s}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")

    @property
    def resolved_threads(self) -> int:
        return self.threads or default_threads()


# What ``zoo build`` records unless --no-bench: a few runs per batch size, about a second a model.
SHORT = LatencyOptions(warmup_runs=2, max_runs=20, time_budget_s=0.25, measured_by="build")


def measured_by(rec: dict) -> str:
    """Which run made a latency record: "build" (zoo build's short run) or "bench". Records of
    schema version 1 do not say; a short run is known by its bounds."""
    if rec.get("measured_by"):
        return rec["measured_by"]
    short = rec.get("max_runs") == SHORT.max_runs and rec.get("time_budget_s") == SHORT.time_budget_s
    return "build" if short else "bench"


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    samples_ms: list[float]  # the timed runs only
    warmup_runs: int  # runs made before timing, not in samples_ms
    wall_s: float  # time spent in the timed loop

    @property
    def runs(self) -> int:
        return len(self.samples_ms)


def time_runs(fn: Callable[[], object], *, warmup_runs: int, max_runs: int, time_budget_s: float,
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn`` ``warmup_runs`` times untimed, then time calls until ``max_runs`` of them or until
    ``time_budget_s`` has passed (at least one timed call). Warm-up stops early, after at least one
    call, when it alone spends the budget: one run of a big model at a big batch can take seconds.
    """
    start = clock()
    warm = 0
    while warm < warmup_runs:
        fn()
        warm += 1
        if clock() - start >= time_budget_s:
            break
    samples: list[float] = []
    t0 = clock()
    while True:
        t = clock()
        fn()
        samples.append((clock() - t) * 1e3)
        if len(samples) >= max_runs or clock() - t0 >= time_budget_s:
            break
    return Timing(samples, warm, clock() - t0)


def summarize(samples_ms: list[float]) -> dict:
    """p50/p90/p99/mean/min/std of run times, in ms, as floats."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise InputError("no timed runs to summarize")
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "std_ms": float(a.std())}


# ---------------------------------------------------------------------------------------------
# the machine


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                entry[k.strip()] = v.strip()
        blocks.append(entry)
    return blocks


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def physical_cores() -> int:
    info = _cpuinfo()
    cores = {(c.get("physical id", "0"), c.get("core id", str(i))) for i, c in enumerate(info)}
    return max(1, min(len(cores) or (os.cpu_count() or 1), _available_cpus()))


def default_threads() -> int:
    """One thread per physical core this process may use (what ONNX Runtime picks by default)."""
    return physical_cores()


@functools.lru_cache(maxsize=1)
def machine_info() -> dict:
    """The machine a latency was measured on: CPU model, cores, ISA features, memory, versions."""
    info = _cpuinfo()
    first = info[0] if info else {}
    flags = set(first.get("flags", "").split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
              "amx_int8", "amx_bf16", "neon", "asimd")
    mem_gb = None
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    out = {
        "cpu": first.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "physical_cores": physical_cores(),
        "available_cores": _available_cpus(),
        "isa": sorted(f for f in wanted if f in flags),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": dist_version("onnxruntime"),
        "torch": dist_version("torch"),
    }
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # pragma: no cover - a broken CUDA setup must not stop a CPU benchmark
        pass
    return out


# ---------------------------------------------------------------------------------------------
# one model


def bench_input(input_dim: int, batch: int, seed: int = 0) -> np.ndarray:
    """The same seeded inputs for ONNX Runtime and PyTorch."""
    rng = np.random.default_rng(seed * 1_000_003 + batch)
    return rng.standard_normal((batch, input_dim), dtype=np.float32)


def default_providers() -> list[str]:
    """The CPU, plus every GPU provider this onnxruntime has and a GPU to run it on."""
    out = ["CPUExecutionProvider"]
    for p in GPU_PROVIDERS:
        if OrtBackend(provider=p).unavailable_reason() is None:
            out.append(p)
    return out


@contextmanager
def torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_onnxruntime(model_bytes: bytes, x: np.ndarray, *, provider: str = "CPUExecutionProvider",
                        threads: int, options: LatencyOptions, input_name: str = "input") -> dict:
    """Session creation plus timed runs of one model at one batch; raises ProviderUnavailableError
    when ``provider`` is missing (never measures the CPU in its place)."""
    from ..errors import ProviderUnavailableError

    backend = OrtBackend(provider=provider, optimization=options.optimization, threads=threads)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise ProviderUnavailableError(reason)
    t = time.perf_counter()
    sess = backend.session(model_bytes)
    create_ms = (time.perf_counter() - t) * 1e3
    outputs = [o.name for o in sess.get_outputs()]
    feeds = {input_name: x}
    timing = time_runs(lambda: sess.run(outputs, feeds), warmup_runs=options.warmup_runs,
                       max_runs=options.max_runs, time_budget_s=options.time_budget_s)
    return {"backend": backend.name, "runtime": "onnxruntime", "version": backend.version(), "provider": provider,
            "optimization": backend.optimization, "session_create_ms": float(create_ms),
            "warmup_runs": timing.warmup_runs, "runs": timing.runs, **summarize(timing.samples_ms)}


def measure_torch(model, x: np.ndarray, *, threads: int, options: LatencyOptions, device: str = "cpu") -> dict:
    """PyTorch eager (``inference_mode``) on the same input with ``threads`` intra-op threads."""
    import torch

    model = model.eval().to(device)
    xt = torch.from_numpy(x).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run():
        with torch.inference_mode():
            model(xt)
        sync()

    with torch_threads(threads):
        timing = time_runs(run, warmup_runs=options.warmup_runs, max_runs=options.max_runs,
                           time_budget_s=options.time_budget_s)
    if device != "cpu":
        model.to("cpu")
    s = summarize(timing.samples_ms)
    return {"torch_p50_ms": s["p50_ms"], "torch_p90_ms": s["p90_ms"], "torch_mean_ms": s["mean_ms"],
            "torch_runs": timing.runs, "torch_device": device}


def _label(provider: str, precision: str) -> str | None:
    if precision == "fp16" and provider == "CPUExecutionProvider":
        return "fp16 on the CPU provider (measured; the fp16 artifact is meant for GPU providers)"
    if precision == "int8" and provider in GPU_PROVIDERS:
        return "int8 on a GPU provider (dynamic-quantised nodes may run on the CPU provider)"
    return None


def measure_model(model_bytes: bytes, *, precision: str, flops: int, input_dim: int, torch_model=None,
                  providers: list[str] | None = None, options: LatencyOptions = LatencyOptions(),
                  input_name: str = "input", torch_cache: dict | None = None,
                  progress: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Latency records of one model file: one per provider and batch size.

    ``flops`` is the manifest's FLOPs per sample. ``torch_model`` (the fp32 PyTorch model) gives
    the PyTorch columns; ``torch_cache`` shares them between the precisions of one model.
    """
    providers = [resolve_provider(p) for p in (providers or ["CPUExecutionProvider"])]
    threads = options.resolved_threads
    torch_cache = {} if torch_cache is None else torch_cache
    records = []
    for provider in providers:
        for batch in options.batch_sizes:
            x = bench_input(input_dim, batch, options.seed)
            rec = measure_onnxruntime(model_bytes, x, provider=provider, threads=threads, options=options,
                                      input_name=input_name)
            p50_s = rec["p50_ms"] / 1e3
            rec.update(precision=precision, batch_size=int(batch), threads=int(threads),
                       time_budget_s=float(options.time_budget_s), max_runs=int(options.max_runs),
                       measured_by=options.measured_by,
                       throughput_sps=float(batch / p50_s) if p50_s > 0 else 0.0,
                       gflops_per_s=float(flops * batch / p50_s / 1e9) if p50_s > 0 else 0.0,
                       torch_p50_ms=None, speedup_vs_torch=None, label=_label(provider, precision))
            if torch_model is not None and options.torch:
                device = "cuda" if provider in GPU_PROVIDERS and _cuda() else "cpu"
                key = (id(torch_model), batch, threads, device)
                if key not in torch_cache:
                    torch_cache[key] = measure_torch(torch_model, x, threads=threads, options=options, device=device)
                rec.update(torch_cache[key])
                rec["speedup_vs_torch"] = speedup(rec["torch_p50_ms"], rec["p50_ms"])
            rec["load_avg_1m"] = _load_avg()  # other work on the machine skews latencies: say how much there was
            rec["machine"] = machine_info()
            records.append(rec)
            ratio = (f", {faster_than(rec['speedup_vs_torch'], 'PyTorch', short=options.measured_by == 'build')}"
                     if rec["speedup_vs_torch"] is not None else "")
            progress(f"{precision} {provider} batch {batch}: p50 {rec['p50_ms']:.3f} ms ({rec['runs']} runs), "
                     f"{rec['gflops_per_s']:.1f} GFLOP/s{ratio}")
    return records


def speedup(baseline_ms: float | None, ms: float | None) -> float | None:
    """How many times faster than the baseline a run of ``ms`` is (baseline / ms): above 1 is faster.
    Every ratio the zoo records or prints follows this convention."""
    return float(baseline_ms / ms) if baseline_ms and ms else None


NOISY = "(noisy: short run; `zoo bench` measures)"


def faster_than(x: float, what: str, *, short: bool = False) -> str:
    """The one way the zoo words a speed ratio ``x`` (baseline / this; above 1 is faster):
    ``2.50x faster than PyTorch``, and a slow-down as such, ``1.43x slower than PyTorch`` (never
    ``0.70x faster``). ``short``: the ratio comes from a short run (zoo build's), which a loaded
    machine can swing by orders of magnitude; it is marked so, and ``zoo bench`` measures it."""
    words = f"{x:.2f}x faster than {what}" if x >= 1 or x <= 0 else f"{1 / x:.2f}x slower than {what}"
    return f"{words} {NOISY}" if short else words


def _load_avg() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        return None


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def upsert_latency(existing: list[dict], new: list[dict]) -> list[dict]:
    """``existing`` with every record of the same key (backend, precision, batch, threads) as one in
    ``new`` replaced by it; the other records stay, in order."""
    keys = {tuple(r.get(k) for k in RECORD_KEY) for r in new}
    return [r for r in existing if tuple(r.get(k) for k in RECORD_KEY) not in keys] + list(new)
