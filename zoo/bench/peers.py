"""Peers side by side: every way this machine can run one model, measured in one run, interleaved.

Contenders (:func:`contenders`): ONNX Runtime on each of the zoo's files (fp32, int8, fp16, and the
static int8 file when there is one), PyTorch eager, ``torch.compile`` (its compile time recorded
apart, never in the latency), OpenVINO at f32 and at its default inference precision (bf16 on CPUs
with AVX-512 BF16 or AMX: recorded as its own backend, ``openvino:default``), and tract. One that
is not installed is *named* with the reason, never dropped.

Interleaved (:func:`measure_peers`): every round gives each contender one turn, starting one
further along each round, so that drift of a shared machine (other jobs, clock, thermals) hits all
of them alike. A turn is a burst, as a user's loop of calls runs: back-to-back untimed calls until
the contender is in its steady state (:data:`WARM_S`), then timed calls, then a pause so that its
spinning threads park. The median over all timed calls is the latency. Records say
runtime, precision, file and settings, the speed-up over ONNX Runtime fp32 on ``model.onnx``
(``speedup_vs_ort_fp32``, above 1 is faster), and, with
a :class:`Roofline`, the fraction of this machine's limits reached (fp32 or bf16 GEMM peak, read
bandwidth at the file's size).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..verify.records import OPENVINO_PRECISIONS
from ..versions import dist_version, install_hint
from .latency import (
    _load_avg,
    bench_input,
    default_threads,
    faster_than,
    machine_info,
    speedup,
    summarize,
)
from .roofline import Roofline, peer_fractions

ORT = "onnxruntime"
# ``runtime:variant`` of the contenders, in table order (files add one ORT row per precision).
PEER_RUNTIMES = ("torch", "torch.compile", "openvino:f32", "openvino:default", "tract")
BASELINE = (ORT, "fp32")  # what the speed-up is over: ONNX Runtime on model.onnx


@dataclass
class Contender:
    """One (runtime, file, settings). ``load(batch)`` returns a zero-argument callable running one
    batch; ``predict(x)`` classifies ``x`` (for the accuracy gate)."""

    runtime: str  # onnxruntime, torch, torch.compile, openvino, tract
    backend: str  # what a record is keyed by: onnxruntime:int8, openvino:default, ...
    precision: str
    file: str | None  # the zoo file it runs (relative path), None for PyTorch
    settings: dict = field(default_factory=dict)
    version: str | None = None
    reason: str | None = None  # why it is not available here
    weight_bytes: int = 0
    _setup: Callable | None = None  # (threads) -> (run(x) -> logits, setup_ms, extra fields)
    _state: tuple | None = None

    def ready(self, threads: int):
        if self._state is None:
            self._state = self._setup(threads)
        return self._state


def _ort(label: str, precision: str, path: str, data: bytes, input_name: str) -> Contender:
    import onnxruntime as ort

    def setup(threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        # ONNX Runtime's default (what zoo.hub.session gives): idle intra-op threads spin for a while
        # before they sleep. Turned off, B7 int8 at batch 1 took twice as long; the rounds below leave
        # a pause after every turn instead, so spinning threads park before the next contender.
        t = time.perf_counter()
        sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        ms = (time.perf_counter() - t) * 1e3
        return (lambda x: sess.run(None, {input_name: x})[0]), ms, {}

    return Contender(ORT, f"{ORT}:{label}", precision, path, {"provider": "CPUExecutionProvider",
                     "optimization": "all",
                     "allow_spinning": True}, ort.__version__, weight_bytes=len(data), _setup=setup)


def _openvino(variant: str, path: str, data: bytes, input_name: str) -> Contender:
    version = dist_version("openvino")
    c = Contender("openvino", f"openvino:{variant}", "fp32" if variant == "f32" else "default", path,
                  {"INFERENCE_PRECISION_HINT": "f32"} if variant == "f32" else {}, version, weight_bytes=len(data))
    if version is None:
        c.reason = f"openvino is not installed ({install_hint('runtimes')})"
        return c

    def setup(threads):
        from .. import onnxio
        from ..verify.backends import import_openvino

        ov = import_openvino()  # without its telemetry writing $HOME/intel

        core = ov.Core()
        config = dict(c.settings, INFERENCE_NUM_THREADS=threads, PERFORMANCE_HINT="LATENCY")
        t = time.perf_counter()
        with onnxio.as_path(data, "zoo-peers-") as p:
            compiled = core.compile_model(core.read_model(str(p)), "CPU", config)
        ms = (time.perf_counter() - t) * 1e3
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # what it really runs at
        actual = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        c.precision = OPENVINO_PRECISIONS.get(actual, actual)
        c.settings = dict(config, inference_precision=actual)
        req = compiled.create_infer_request()
        out = compiled.outputs[0]
        return (lambda x: req.infer({input_name: x})[out]), ms, {}

    c._setup = setup
    return c


def _tract(path: str, data: bytes) -> Contender:
    version = dist_version("tract")
    c = Contender("tract", "tract", "fp32", path, {}, version, weight_bytes=len(data))
    if version is None:
        c.reason = f"tract is not installed ({install_hint('runtimes')})"
        return c

    def setup(threads):
        from ..verify.backends import _TractRunner

        t = time.perf_counter()
        runner = _TractRunner(data)  # tract runs on one thread; recorded as it is
        ms = (time.perf_counter() - t) * 1e3
        return (lambda x: runner.runnable.run([x])[0].to_numpy()), ms, {}

    c._setup = setup
    c.settings = {"threads": 1}
    return c


def _torch(model, compiled: bool, weight_bytes: int) -> Contender:
    import torch

    version = torch.__version__.split("+")[0]
    if not compiled:
        def setup(threads):
            torch.set_num_threads(threads)  # once: resizing the pool on every call costs more than a run

            def run(x):
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).numpy()
            return run, 0.0, {}

        return Contender("torch", "torch", "fp32", None, {"mode": "eager", "inference_mode": True}, version,
                         weight_bytes=weight_bytes, _setup=setup)
    c = Contender("torch.compile", "torch.compile", "fp32", None, {"backend": "inductor", "dynamic": False},
                  version, weight_bytes=weight_bytes)
    try:
        import torch._inductor
    except Exception as e:  # noqa: BLE001 - any failure here means no compiler (pragma: no cover)
        c.reason = f"torch.compile (inductor) is not usable here: {type(e).__name__}: {e}"
        return c

    def setup(threads):
        fn = torch.compile(model, dynamic=False)
        compile_s = {}

        torch.set_num_threads(threads)

        def run(x):
            with torch.inference_mode():
                key = x.shape
                if key not in compile_s:  # the first call at a shape compiles: timed apart
                    t = time.perf_counter()
                    y = fn(torch.from_numpy(x))
                    compile_s[key] = time.perf_counter() - t
                    return y.numpy()
                return fn(torch.from_numpy(x)).numpy()

        run.compile_s = compile_s
        return run, 0.0, {}

    c._setup = setup
    return c


def contenders(files: list[tuple[str, str, bytes]], torch_model=None, *, input_name: str = "input",
               runtimes: tuple[str, ...] = PEER_RUNTIMES) -> list[Contender]:
    """``files``: ``(precision, relpath, bytes)`` of the zoo's files, fp32 first. Every runtime in
    ``runtimes`` gets a contender, available or not (then with ``reason``)."""
    fp32 = next(((p, d) for prec, p, d in files if prec == "fp32"), None)
    if fp32 is None:
        raise ValueError("peers need the fp32 model file")
    out = [_ort(prec, prec, path, data, input_name) for prec, path, data in files]
    fp32_path, fp32_bytes = fp32
    for r in runtimes:
        if r in ("torch", "torch.compile"):
            if torch_model is None:
                out.append(Contender(r, r, "fp32", None, reason="no PyTorch model was given (--no-torch)"))
            else:
                out.append(_torch(torch_model, r == "torch.compile", len(fp32_bytes)))
        elif r.startswith("openvino:"):
            out.append(_openvino(r.split(":", 1)[1], fp32_path, fp32_bytes, input_name))
        elif r == "tract":
            out.append(_tract(fp32_path, fp32_bytes))
        else:
            raise ValueError(f"unknown peer runtime {r!r}; valid: {', '.join(PEER_RUNTIMES)}")
    return out


# A turn's back-to-back untimed calls before its timed ones. Measured (B7 int8, batch 1, ONNX Runtime,
# this CPU): after the 50 ms pause the first call took 1.6x the steady state and the 12th still 1.1x
# (the model's weights are back in the caches, shared with the other contenders and other tenants,
# only after many calls); one untimed call, the method before, reported 0.55x of fp32 where a loop
# of calls gets 0.36x. Time, not a count: a small model needs many calls, a large batch one.
WARM_S = 0.2
WARM_MAX_CALLS = 200
# Timed calls per turn: until BURST_S of timed calls, at most BURST_CALLS, at least one.
BURST_S = 0.05
BURST_CALLS = 10
# After each turn: longer than a runtime's threads spin before they sleep (measured: ONNX
# Runtime's idle threads burn about 30 ms of CPU after a run).
PARK_S = 0.05
MIN_ROUNDS = 3


def _turn(fn, x, warm_s: float, burst_s: float, burst_calls: int) -> list[float]:
    """One contender's turn: warm calls (at least one) until ``warm_s``, then the timed ones (ms)."""
    start, calls = time.perf_counter(), 0
    while True:
        fn(x)
        calls += 1
        if time.perf_counter() - start >= warm_s or calls >= WARM_MAX_CALLS:
            break
    out: list[float] = []
    while not out or (len(out) < burst_calls and sum(out) < burst_s * 1e3):
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _identity(c: Contender, batch: int, threads: int) -> dict:
    """What a record of ``c`` at ``batch`` is about: runtime, file, settings, size."""
    return {"runtime": c.runtime, "backend": c.backend, "precision": c.precision, "file": c.file,
            "settings": dict(c.settings), "version": c.version, "batch_size": int(batch),
            "threads": int(threads), "weight_bytes": int(c.weight_bytes)}


def measure_peers(cands: list[Contender], *, input_dim: int, flops: int, batch_sizes=(1, 32, 256),
                  threads: int | None = None, warmup_runs: int = 3, max_rounds: int = 50,
                  time_budget_s: float = 10.0, roofline: Roofline | None = None, seed: int = 0,
                  warm_s: float = WARM_S, burst_s: float = BURST_S, burst_calls: int = BURST_CALLS,
                  min_rounds: int = MIN_ROUNDS, progress: Callable[[str], None] = lambda m: None) -> list[dict]:
    """One record per contender and batch size; unavailable contenders get one record per batch
    with ``verdict: "unavailable"`` and the reason. ``time_budget_s`` bounds each batch size's
    interleaved rounds (the timed calls of all contenders together; warm calls and pauses not
    counted), after at least ``min_rounds`` rounds (fewer only when ``max_rounds`` says so)."""
    threads = threads or default_threads()
    records = []
    for batch in batch_sizes:
        x = bench_input(input_dim, batch, seed)
        live, runs = [], {}
        for c in cands:
            before = _identity(c, batch, threads)  # as it was asked for, if setting it up fails
            if c.reason is None:
                try:
                    fn, setup_ms, _ = c.ready(threads)
                    for _ in range(max(1, warmup_runs)):
                        fn(x)
                    live.append((c, fn, setup_ms))
                    runs[c.backend] = []
                    continue
                except Exception as e:  # noqa: BLE001 - a runtime that cannot run this model is named, not fatal
                    c.reason = f"{c.backend} cannot run the model: {type(e).__name__}: {str(e).strip()[:200]}"
            records.append(dict(before, verdict="unavailable", reason=c.reason))
            progress(f"batch {batch}: {c.backend}: unavailable ({c.reason})")
        timed = 0.0  # the budget counts timed calls only, not the warm calls and pauses around them
        rounds = 0
        for rounds in range(1, max_rounds + 1):
            k = (rounds - 1) % max(1, len(live))
            for c, fn, _ in live[k:] + live[:k]:  # a different one goes first each round
                ms = _turn(fn, x, warm_s, burst_s, burst_calls)
                runs[c.backend].extend(ms)
                timed += sum(ms) / 1e3
                time.sleep(PARK_S)
            if timed >= time_budget_s and rounds >= min_rounds:
                break
        load = _load_avg()
        for c, fn, setup_ms in live:
            # After setup: OpenVINO's contender learns there which precision it really runs at.
            rec = {**_identity(c, batch, threads), "verdict": "measured",
                   "reason": None, "setup_ms": float(setup_ms), "runs": len(runs[c.backend]),
                   **summarize(runs[c.backend]), "load_avg_1m": load,
                   "timing": {"method": "interleaved bursts", "rounds": rounds, "warm_s": warm_s,
                              "burst_calls": burst_calls, "burst_s": burst_s, "pause_s": PARK_S}}
            compile_s = getattr(fn, "compile_s", None)
            if compile_s is not None:
                rec["compile_s"] = float(compile_s.get(x.shape, 0.0))
            p50_s = rec["p50_ms"] / 1e3
            rec["gflops_per_s"] = float(flops * batch / p50_s / 1e9) if p50_s > 0 else 0.0
            if roofline is not None:
                rec.update(peer_fractions(rec, flops, roofline))
            records.append(rec)
        base = next((r for r in records if r["batch_size"] == batch and (r["runtime"], r["precision"]) == BASELINE
                     and r["verdict"] == "measured"), None)
        for r in records:
            if r["batch_size"] == batch and r["verdict"] == "measured":
                r["speedup_vs_ort_fp32"] = speedup(base["p50_ms"], r["p50_ms"]) if base else None
                progress(f"batch {batch}: {r['backend']} ({r['precision']}): p50 {r['p50_ms']:.3f} ms"
                         + (f", {faster_than(r['speedup_vs_ort_fp32'], 'ORT fp32')}" if base else ""))
    return records


def add_accuracy(cands: list[Contender], records: list[dict], x_test: np.ndarray, y_test: np.ndarray,
                 dataset, torch_model, threads: int | None = None, chunk: int = 1000,
                 min_agreement: float | None = None) -> None:
    """Top-1 of every available contender on the test split, through the same runner that was
    timed, judged by the accuracy gate (:func:`zoo.verify.accuracy.gate`); written into each of
    its records as ``accuracy``."""
    from ..verify.accuracy import MIN_AGREEMENT, gate, predict_torch, record

    threads = threads or default_threads()
    torch_pred = predict_torch(torch_model, x_test)
    for c in cands:
        if c.reason is not None:
            acc = record(c.backend, c.precision, dataset, None, y_test, torch_pred, c.runtime, c.version,
                         verdict="unavailable", reason=c.reason)
        else:
            fn = c.ready(threads)[0]
            pred = _predict(fn, x_test, chunk)
            acc = record(c.backend, c.precision, dataset, pred, y_test, torch_pred, c.runtime, c.version)
            why = gate(acc, MIN_AGREEMENT if min_agreement is None else min_agreement)
            if why:
                acc.update(verdict="fail", reason=why)
        for r in records:
            if r["backend"] == c.backend:
                r["accuracy"] = {k: acc[k] for k in ("dataset", "samples", "top1", "agreement", "torch_top1",
                                                     "verdict", "reason")}


def _predict(fn, x: np.ndarray, chunk: int) -> np.ndarray:
    """Classes of ``x`` in chunks of one shape (the last one zero-padded): a compiled contender
    compiles once, not once per remainder."""
    chunk = min(chunk, len(x))
    out = []
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]
        n = len(part)
        if n < chunk:
            part = np.concatenate([part, np.zeros((chunk - n, x.shape[1]), dtype=x.dtype)])
        out.append(np.asarray(fn(np.ascontiguousarray(part)), dtype=np.float32)[:n].argmax(1))
    return np.concatenate(out)


def environment() -> dict:
    """Where a peers run happened (machine, load) for the manifest and the report."""
    return {"machine": machine_info(), "load_avg_1m": _load_avg(), "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else None}
