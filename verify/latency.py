"""Latency of zoo artifacts: ONNX Runtime per provider, precision and batch size, PyTorch beside it.

One measurement (:func:`time_runs`) is: warm-up runs that are not counted, then timed runs that
stop at ``max_runs`` *or* when ``time_budget_s`` is spent, whichever comes first (at least one
timed run). Percentiles are numpy's linear interpolation over the timed runs, so
``p50 <= p90 <= p99`` always. Throughput and achieved GFLOP/s are taken from the median run.

A latency record (:func:`measure_model`) holds session creation time, the run statistics, the
thread count, the machine, and PyTorch eager on the same inputs with the same threads (the
``torch_*`` fields and ``ratio_vs_torch`` = ONNX Runtime p50 / PyTorch p50; below 1 means ONNX
Runtime is faster). Numbers are floats; counts are integers.

``--roofline`` (:func:`gemm_peak`, :func:`read_bandwidth`, :func:`roofline_row`) puts each record
against this machine's measured fp32 GEMM peak and memory read bandwidth.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from zoo.manifest import dist_version

from .backends import OrtBackend

DEFAULT_BATCH_SIZES = (1, 32, 256)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}
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

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1
                                       for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.warmup_runs < 0:
            raise ValueError(f"warm-up runs must be >= 0, got {self.warmup_runs}")
        if self.max_runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.max_runs}")
        if not self.time_budget_s > 0:
            raise ValueError(f"the time budget must be > 0 seconds, got {self.time_budget_s}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def resolved_threads(self) -> int:
        return self.threads or default_threads()


# What ``zoo build`` records unless --no-bench: a few runs per batch size, about a second a model.
SHORT = LatencyOptions(warmup_runs=2, max_runs=20, time_budget_s=0.25)


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
        raise ValueError("no timed runs to summarize")
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


def resolve_provider(name: str) -> str:
    full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
    if full not in ("CPUExecutionProvider", *GPU_PROVIDERS):
        raise ValueError(f"unknown execution provider {name!r}; valid: cpu, cuda, tensorrt "
                         f"(or CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider)")
    return full


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
    from zoo.errors import ProviderUnavailableError

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
                       throughput_sps=float(batch / p50_s) if p50_s > 0 else 0.0,
                       gflops_per_s=float(flops * batch / p50_s / 1e9) if p50_s > 0 else 0.0,
                       torch_p50_ms=None, ratio_vs_torch=None, label=_label(provider, precision))
            if torch_model is not None and options.torch:
                device = "cuda" if provider in GPU_PROVIDERS and _cuda() else "cpu"
                key = (id(torch_model), batch, threads, device)
                if key not in torch_cache:
                    torch_cache[key] = measure_torch(torch_model, x, threads=threads, options=options, device=device)
                rec.update(torch_cache[key])
                rec["ratio_vs_torch"] = float(rec["p50_ms"] / rec["torch_p50_ms"]) if rec["torch_p50_ms"] else None
            rec["load_avg_1m"] = _load_avg()  # other work on the machine skews latencies: say how much there was
            rec["machine"] = machine_info()
            records.append(rec)
            ratio = f", {rec['ratio_vs_torch']:.2f}x PyTorch" if rec["ratio_vs_torch"] is not None else ""
            progress(f"{precision} {provider} batch {batch}: p50 {rec['p50_ms']:.3f} ms ({rec['runs']} runs), "
                     f"{rec['gflops_per_s']:.1f} GFLOP/s{ratio}")
    return records


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


def latency_extra(precisions, *, providers: list[str] | None = None, options: LatencyOptions = SHORT):
    """A ``zoo build`` extra: a short latency run of every model file of ``precisions`` just built."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        cache: dict = {}
        for f in entry["files"]:
            if f["role"] != "model" or f["precision"] not in precisions:
                continue
            recs = measure_model(staged[f["path"]], precision=f["precision"], flops=art.flops,
                                 input_dim=art.request.effective_input_dim, torch_model=art.model,
                                 providers=providers, options=options, input_name=art.request.spec.input_name,
                                 torch_cache=cache, progress=progress)
            entry["latency"] = upsert_latency(entry.get("latency", []), recs)

    return extra


# ---------------------------------------------------------------------------------------------
# roofline


def gemm_peak(threads: int, sizes: tuple[int, ...] = (1024, 2048), time_budget_s: float = 4.0) -> dict:
    """This machine's fp32 GEMM rate in GFLOP/s: the best of PyTorch ``mm`` (and of numpy ``matmul``
    when numpy's BLAS would use the same threads) over square sizes, ``threads`` threads."""
    import torch

    best = {"gflops": 0.0, "library": None, "n": None}
    per_size = max(time_budget_s / (2 * len(sizes)), 0.05)
    g = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        with torch_threads(threads):
            t = time_runs(lambda: torch.mm(a, b, out=out), warmup_runs=2, max_runs=20, time_budget_s=per_size)
        rate = 2 * n**3 / (min(t.samples_ms) / 1e3) / 1e9
        if rate > best["gflops"]:
            best = {"gflops": float(rate), "library": f"torch {torch.__version__.split('+')[0]} mm", "n": n}
        if threads == _available_cpus():  # numpy's BLAS uses every core by default
            an, bn = a.numpy(), b.numpy()
            t = time_runs(lambda: np.matmul(an, bn), warmup_runs=2, max_runs=20, time_budget_s=per_size)
            rate = 2 * n**3 / (min(t.samples_ms) / 1e3) / 1e9
            if rate > best["gflops"]:
                best = {"gflops": float(rate), "library": f"numpy {np.__version__} matmul", "n": n}
    best["threads"] = threads
    return best


def read_bandwidth(nbytes: int, threads: int, time_budget_s: float = 1.0) -> float:
    """Read bandwidth in GB/s over a working set of ``nbytes`` (a float32 sum with ``threads``
    threads, best run): of DRAM for sets well above the last-level cache, of the cache below it."""
    import torch

    n = max(nbytes // 4, 1 << 16)
    x = torch.ones(n, dtype=torch.float32)
    with torch_threads(threads):
        t = time_runs(lambda: x.sum(), warmup_runs=2, max_runs=50, time_budget_s=time_budget_s)
    return float(n * 4 / (min(t.samples_ms) / 1e3) / 1e9)


@dataclass
class Machine:
    """This machine's limits for the roofline."""

    gemm: dict
    dram_gbs: float
    threads: int
    _ws: dict | None = None

    def bandwidth_for(self, nbytes: int) -> float:
        """Read bandwidth for a working set of ``nbytes`` (measured once per size, rounded up to MiB)."""
        self._ws = self._ws if self._ws is not None else {}
        key = max(1, -(-nbytes // (1 << 20)))
        if key not in self._ws:
            self._ws[key] = read_bandwidth(key << 20, self.threads, time_budget_s=0.5)
        return self._ws[key]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_ws")
        d["gemm_peak_gflops"] = self.gemm["gflops"]
        return d


def measure_machine(threads: int | None = None, dram_bytes: int = 1 << 30, gemm_sizes=(1024, 2048)) -> Machine:
    threads = threads or default_threads()
    return Machine(gemm=gemm_peak(threads, gemm_sizes), dram_gbs=read_bandwidth(dram_bytes, threads), threads=threads)


def roofline_row(rec: dict, *, flops: int, weight_bytes: int, machine: Machine) -> dict:
    """One latency record against the machine: achieved GFLOP/s as a fraction of the GEMM peak,
    weight bytes per second as a fraction of the read bandwidth at that working-set size, and
    the fraction of the roofline limit ``max(flops / peak, bytes / bandwidth)`` reached."""
    p50_s = rec["p50_ms"] / 1e3
    work = flops * rec["batch_size"]
    peak = machine.gemm["gflops"] * 1e9
    bw = machine.bandwidth_for(weight_bytes) * 1e9
    t_compute, t_memory = work / peak, weight_bytes / bw
    return {
        "model": rec.get("model"),
        "precision": rec["precision"],
        "provider": rec.get("provider"),
        "batch_size": rec["batch_size"],
        "p50_ms": rec["p50_ms"],
        "gflops_per_s": work / p50_s / 1e9,
        "frac_gemm_peak": t_compute / p50_s,
        "weights_gb_per_s": weight_bytes / p50_s / 1e9,
        "read_bw_gb_per_s": bw / 1e9,
        "frac_read_bw": t_memory / p50_s,
        "bound": "compute" if t_compute >= t_memory else "memory",
        "frac_roofline": max(t_compute, t_memory) / p50_s,
        "ratio_vs_torch": rec.get("ratio_vs_torch"),
    }


# ---------------------------------------------------------------------------------------------
# a built zoo


def bench_artifacts(root, names=None, *, precisions=None, providers=None, options: LatencyOptions = LatencyOptions(),
                    save: bool = True, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Measure the model files of a built zoo (``root/manifest.json``) and record the latencies.

    ``names`` None: every model. ``precisions`` None: every precision each model has; a precision
    asked for by name that a model lacks is an error. ``providers`` None: the CPU plus available
    GPU providers; one asked for and missing is an error before anything is measured. Each file's
    sha256 is checked against the manifest first. With ``save``, the manifest is re-read just
    before writing and only the latency records of the measured models change.
    """
    from pathlib import Path

    from zoo import manifest as mf
    from zoo.artifact import ModelRequest
    from zoo.errors import ManifestError, ProviderUnavailableError, ZooError
    from zoo.fsutil import sha256_bytes, sha256_file

    root = Path(root)
    path = root / mf.MANIFEST_NAME
    manifest = mf.load(path)
    entries = [mf.entry(manifest, n) for n in dict.fromkeys(names)] if names else list(manifest["models"])
    if not entries:
        raise ManifestError(f"{path} lists no models; build some with `zoo build`")
    providers = [resolve_provider(p) for p in providers] if providers else default_providers()
    for p in providers:
        reason = OrtBackend(provider=p).unavailable_reason()
        if reason is not None:
            raise ProviderUnavailableError(reason)
    plan = []
    for entry in entries:
        files = [f for f in entry["files"] if f["role"] == "model" and (precisions is None or f["precision"] in precisions)]
        have = {f["precision"] for f in files}
        missing = [p for p in (precisions or ()) if p not in have]
        if missing:
            raise ManifestError(f"{entry['model']} has no {missing[0]} file in {path}; "
                                f"build it with `zoo build {entry['model']} --precision fp32,{missing[0]}`")
        for f in files:  # every file checked before the slow part starts
            try:
                same = sha256_file(root / f["path"]) == f["sha256"]
            except OSError as e:
                raise ZooError(f"cannot read {root / f['path']}: {e.strerror}") from None
            if not same:
                raise ZooError(f"{root / f['path']} differs from its manifest record (sha256); rebuild it with "
                               f"`zoo build`")
        plan.append((entry, files))

    results: dict[str, list[dict]] = {}
    measured: dict[tuple[str, str], str] = {}  # (model, precision) -> sha256 of the file measured
    for i, (entry, files) in enumerate(plan, 1):
        name = entry["model"]
        tag = f"[{i}/{len(plan)}] {name}"
        torch_model = ModelRequest.from_entry(entry).create() if options.torch else None
        cache: dict = {}
        recs: list[dict] = []
        for f in files:
            fpath = root / f["path"]
            try:
                data = fpath.read_bytes()
            except OSError as e:
                raise ZooError(f"cannot read {fpath}: {e.strerror}") from None
            if sha256_bytes(data) != f["sha256"]:
                raise ZooError(f"{fpath} differs from its manifest record (sha256); rebuild it with `zoo build`")
            measured[(name, f["precision"])] = f["sha256"]
            recs += measure_model(data, precision=f["precision"], flops=entry["flops"],
                                  input_dim=entry["scaling"]["input_dim"], torch_model=torch_model,
                                  providers=providers, options=options,
                                  input_name=entry["metadata"]["io_ports"]["inputs"][0]["name"],
                                  torch_cache=cache, progress=lambda m, tag=tag: progress(f"{tag}: {m}"))
        results[name] = recs

    if save:
        fresh = mf.load(path)
        for name, recs in results.items():
            try:
                entry = mf.entry(fresh, name)
            except ManifestError:
                progress(f"{name} left the manifest while it was measured; its latencies are not saved")
                continue
            current = {f["precision"]: f["sha256"] for f in entry["files"] if f["role"] == "model"}
            kept = [r for r in recs if current.get(r["precision"]) == measured[(name, r["precision"])]]
            if len(kept) < len(recs):
                progress(f"{name} was rebuilt while it was measured; its stale latencies are not saved")
            entry["latency"] = upsert_latency(entry.get("latency", []), kept)
        mf.save(path, fresh)
        manifest = fresh
    return {"manifest": str(path), "results": results, "entries": {e["model"]: e for e in manifest["models"]}}
