"""Timing on one provider: ONNX Runtime plain, with I/O binding, and with CUDA graphs; PyTorch
eager and ``torch.compile`` on the same device and inputs.

Every measurement is :func:`zoo.bench.latency.time_runs` with fixed small counts and a time cap
(:data:`FAST`), so B0-B7 at two batch sizes and two precisions fit the check's few minutes. A GPU
call returns only once its outputs are ready: ONNX Runtime synchronises its stream at the end of a
run (and the bound outputs are synchronised explicitly), PyTorch is followed by
``torch.cuda.synchronize``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ... import onnxio
from ...bench.latency import LatencyOptions, summarize, time_runs
from ...errors import ProviderUnavailableError
from .env import CUDA, CUDA_OPTIONS, make_session

# Warm-up runs, then timed runs up to max_runs or the time cap: ~0.2 s per measurement.
FAST = LatencyOptions(batch_sizes=(1, 256), warmup_runs=5, max_runs=100, time_budget_s=0.2)
MODES = ("plain", "iobinding", "cudagraph")
# A mode's backend name: each its own latency-record key (backend, precision, batch, threads).
SUFFIX = {"plain": "", "iobinding": ":iobinding", "cudagraph": ":cudagraph"}


@dataclass
class Measured:
    """One timed configuration: its summary, or why it was not timed."""

    summary: dict | None = None
    runs: int = 0
    warmup_runs: int = 0
    session_create_ms: float | None = None
    matches_plain: bool | None = None  # the mode's output against plain session.run's
    reason: str | None = None


def _timed(fn, options: LatencyOptions) -> tuple[dict, int, int]:
    t = time_runs(fn, warmup_runs=options.warmup_runs, max_runs=options.max_runs,
                  time_budget_s=options.time_budget_s)
    return summarize(t.samples_ms), t.runs, t.warmup_runs


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    # The same session maths on the same device: only the order of reductions may differ.
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-3))


def ort_modes(model: onnxio.ModelRef, xs: dict[int, np.ndarray], *, provider: str, input_name: str,
              output_name: str, options: LatencyOptions = FAST) -> dict[tuple[int, str], Measured]:
    """``{(batch, mode): Measured}`` for one model file: plain ``run`` and I/O binding share a
    session; CUDA graphs need a session per input shape (ONNX Runtime captures one graph per
    session) and the CUDA provider. Raises ProviderUnavailableError if the session left ``provider``."""
    import onnxruntime as ort

    opts = CUDA_OPTIONS if provider == CUDA else {}
    t = time.perf_counter()
    sess = make_session(model, provider, opts)
    create_ms = (time.perf_counter() - t) * 1e3
    device = "cuda" if provider == CUDA else "cpu"
    out: dict[tuple[int, str], Measured] = {}
    for batch, x in xs.items():
        feeds = {input_name: x}
        reference = sess.run([output_name], feeds)[0]
        s, runs, warm = _timed(lambda: sess.run([output_name], feeds), options)
        out[(batch, "plain")] = Measured(s, runs, warm, create_ms, True)
        try:
            binding = sess.io_binding()
            x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
            binding.bind_ortvalue_input(input_name, x_dev)
            binding.bind_output(output_name, device)

            def bound():
                sess.run_with_iobinding(binding)
                binding.synchronize_outputs()

            bound()
            same = _close(binding.copy_outputs_to_cpu()[0], reference)
            s, runs, warm = _timed(bound, options)
            out[(batch, "iobinding")] = Measured(s, runs, warm, create_ms, same)
        except Exception as e:  # an unsupported binding is a finding, not a crash
            out[(batch, "iobinding")] = Measured(reason=f"I/O binding failed: {type(e).__name__}: {_first(e)}")
        out[(batch, "cudagraph")] = _cuda_graph(model, x, reference, provider=provider, input_name=input_name,
                                                output_name=output_name, options=options)
    return out


def _cuda_graph(model, x, reference, *, provider, input_name, output_name, options) -> Measured:
    if provider != CUDA:
        return Measured(reason=f"CUDA graphs need {CUDA} (this run: {provider})")
    try:
        t = time.perf_counter()
        sess = make_session(model, provider, {**CUDA_OPTIONS, "enable_cuda_graph": "1"})
        create_ms = (time.perf_counter() - t) * 1e3
        # The first run captures the graph; later runs replay it.
        return fixed_buffers(sess, x, reference, device="cuda", input_name=input_name, output_name=output_name,
                             options=options, create_ms=create_ms)
    except ProviderUnavailableError as e:
        return Measured(reason=str(e))
    except Exception as e:  # ONNX Runtime refuses graphs with nodes on the CPU provider, say
        return Measured(reason=f"CUDA graphs failed: {type(e).__name__}: {_first(e)}")


def fixed_buffers(sess, x, reference, *, device: str, input_name: str, output_name: str, options: LatencyOptions,
                  create_ms: float | None = None) -> Measured:
    """Runs bound to buffers allocated once on ``device`` (what a CUDA graph needs: it replays onto
    the addresses it was captured with), timed after two runs; the output checked against
    ``reference``."""
    import onnxruntime as ort

    x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
    y_dev = ort.OrtValue.ortvalue_from_shape_and_type(list(reference.shape), reference.dtype.type, device, 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(input_name, x_dev)
    binding.bind_ortvalue_output(output_name, y_dev)

    def replay():
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    replay()
    replay()
    same = _close(binding.copy_outputs_to_cpu()[0], reference)
    s, runs, warm = _timed(replay, options)
    return Measured(s, runs, warm, create_ms, same)


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def torch_modes(model, xs: dict[int, np.ndarray], *, device: str, precision: str, compile_backend: str | None,
                options: LatencyOptions = FAST, can_compile=lambda: True,
                eager: bool = True) -> dict[tuple[int, str], Measured]:
    """``{(batch, "eager" | "compile"): Measured}``: the fp32 PyTorch model at ``precision`` (fp16:
    ``.half()``, inputs cast once beforehand) on ``device``. ``eager`` False leaves eager out;
    ``compile_backend`` None skips torch.compile; ``can_compile()`` False (the check's time is
    up) skips it with that reason."""
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.float32
    net = _copy(model).to(device=device, dtype=dtype).eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict[tuple[int, str], Measured] = {}
    compiled = None
    for batch, x in xs.items():
        xt = torch.from_numpy(x).to(device=device, dtype=dtype)

        def run_eager():
            with torch.inference_mode():
                net(xt)
            sync()

        if eager:
            s, runs, warm = _timed(run_eager, options)
            out[(batch, "eager")] = Measured(s, runs, warm)
        if compile_backend is None:
            out[(batch, "compile")] = Measured(reason="torch.compile not asked for (--compile none)")
            continue
        if not can_compile():
            out[(batch, "compile")] = Measured(reason="skipped: the check's time limit was reached")
            continue
        try:
            if compiled is None:
                compiled = torch.compile(net, backend=compile_backend, dynamic=False)

            def run_compiled():
                with torch.inference_mode():
                    compiled(xt)
                sync()

            t = time.perf_counter()
            run_compiled()  # compiles for this shape
            compile_ms = (time.perf_counter() - t) * 1e3
            s, runs, warm = _timed(run_compiled, options)
            out[(batch, "compile")] = Measured(s, runs, warm, session_create_ms=compile_ms)
        except Exception as e:  # an inductor failure is reported, the rest of the check goes on
            out[(batch, "compile")] = Measured(reason=f"torch.compile failed: {type(e).__name__}: {_first(e)}")
    if device != "cpu":
        del net, compiled
        torch.cuda.empty_cache()
    return out


def _copy(model):
    import copy

    return copy.deepcopy(model)
