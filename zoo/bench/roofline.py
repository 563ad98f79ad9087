"""This machine's limits: fp32 GEMM peak (and bf16's, for the peers), memory read bandwidth, and how
close a latency record (:func:`roofline_row`) or a peers record (:func:`peer_fractions`) gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .latency import _available_cpus, default_threads, machine_info, time_runs, torch_threads


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
        "speedup_vs_torch": rec.get("speedup_vs_torch"),
    }


@dataclass
class Roofline:
    """This machine's limits: fp32 (and bf16, when measurable) GEMM peaks and read bandwidth."""

    fp32_gflops: float
    bf16_gflops: float | None
    bandwidth_for: Callable[[int], float]  # working-set bytes -> GB/s

    def peak(self, precision: str) -> float:
        return self.bf16_gflops if precision == "bf16" and self.bf16_gflops else self.fp32_gflops


def bf16_gemm_peak(threads: int, n: int = 1024, time_budget_s: float = 1.0) -> float | None:
    """bf16 GEMM rate (PyTorch ``mm``, oneDNN) in GFLOP/s, or None when this CPU has no native bf16
    (emulated bf16 would be a meaningless peak)."""
    import torch

    if "avx512_bf16" not in machine_info()["isa"] and "amx_bf16" not in machine_info()["isa"]:
        return None
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(torch.bfloat16) for _ in range(2))
    with torch_threads(threads):
        t = time_runs(lambda: torch.mm(a, b), warmup_runs=2, max_runs=20, time_budget_s=time_budget_s)
    return float(2 * n**3 / (min(t.samples_ms) / 1e3) / 1e9)


def measure_roofline(threads: int) -> Roofline:
    m = measure_machine(threads)
    return Roofline(m.gemm["gflops"], bf16_gemm_peak(threads), m.bandwidth_for)


def peer_fractions(rec: dict, flops: int, roofline: Roofline) -> dict:
    """A peers record's fractions of the limits. int8 and int4 have no measured integer GEMM peak here: their compute
    fraction is left out (None) rather than set against the fp32 peak, and their limit is the weight stream."""
    p50_s = rec["p50_ms"] / 1e3
    wbytes = rec["weight_bytes"] // 2 if rec["precision"] == "bf16" else rec["weight_bytes"]
    bw = roofline.bandwidth_for(wbytes) * 1e9
    t_m = wbytes / bw
    if rec["precision"].startswith("int"):
        return {"peak_gflops": None, "frac_gemm_peak": None, "read_bw_gb_per_s": bw / 1e9,
                "frac_read_bw": t_m / p50_s, "bound": "memory", "frac_roofline": t_m / p50_s}
    peak = roofline.peak(rec["precision"]) * 1e9
    t_c = flops * rec["batch_size"] / peak
    return {"peak_gflops": peak / 1e9, "frac_gemm_peak": t_c / p50_s, "read_bw_gb_per_s": bw / 1e9,
            "frac_read_bw": t_m / p50_s, "bound": "compute" if t_c >= t_m else "memory",
            "frac_roofline": max(t_c, t_m) / p50_s}
