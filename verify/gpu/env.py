"""The GPU check's environment: which provider really runs, TensorRT's libraries, the machine.

ONNX Runtime falls back to the CPU provider silently when the CUDA provider cannot load (a missing
cuDNN, no GPU): :func:`preflight` runs a one-node model on the provider asked for and refuses
(``ProviderUnavailableError``, exit 3) unless the session's first provider is that one.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from dataclasses import dataclass, field

from ... import onnxio
from ...errors import ProviderUnavailableError
from ...spec import resolve_provider
from ..backends import OrtBackend

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
# ONNX Runtime's CUDA provider computes float32 GEMMs in TF32 by default (use_tf32=1); PyTorch's
# default is strict float32. Parity and timing use strict float32 on both sides.
CUDA_OPTIONS = {"use_tf32": "0"}
TRT_LIBS = ("libnvinfer.so.10", "libnvinfer.so")
NO_GPU_BANNER = ("NO GPU WAS USED: this is a dry run on the CPU provider; no figure in it is a GPU figure, "
                 "and none may be reported as one.")


@dataclass
class ProviderBackend(OrtBackend):
    """An ONNX Runtime provider with provider options (the matrix's OrtBackend passes none)."""

    provider_options: dict = field(default_factory=dict)

    def session(self, model: onnxio.ModelRef, extra_options: dict | None = None):
        return make_session(model, self.provider, {**self.provider_options, **(extra_options or {})},
                            self.optimization or "all")


def make_session(model: onnxio.ModelRef, provider: str, provider_options: dict | None = None,
                 optimization: str = "all"):
    """A session on ``provider`` (with its options), refused if ONNX Runtime put it anywhere else."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    opts.log_severity_level = 3
    providers = [(provider, dict(provider_options or {}))] if provider != CPU else [CPU]
    if provider != CPU:
        providers.append(CPU)  # nodes the GPU provider lacks; a session that *starts* with the CPU is refused
    try:
        sess = ort.InferenceSession(onnxio.ort_source(model), sess_options=opts, providers=providers)
    except Exception as e:  # ONNX Runtime raises its own types (Fail, RuntimeException, ...)
        raise ProviderUnavailableError(f"{provider}: session creation failed: {type(e).__name__}: "
                                       f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from e
    actual = sess.get_providers()
    if not actual or actual[0] != provider:
        raise ProviderUnavailableError(f"{provider} was asked for, but ONNX Runtime runs the session on "
                                       f"{actual[0] if actual else 'nothing'}: refusing to report its figures")
    return sess


def backend_for(provider: str, optimization: str = "all") -> ProviderBackend:
    provider = resolve_provider(provider)
    return ProviderBackend(provider=provider, optimization=optimization,
                           provider_options=dict(CUDA_OPTIONS) if provider == CUDA else {})


def tiny_model() -> bytes:
    """``y = x + x`` on float32 [N, 4]: enough to see where ONNX Runtime puts a session."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "zoo_preflight",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def preload() -> str | None:
    """Let ONNX Runtime find CUDA and cuDNN: PyTorch's (imported first) or the nvidia-* packages'."""
    import torch  # noqa: F401 - loads the CUDA libraries PyTorch was built with
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):
        return None
    try:
        ort.preload_dlls()
        return None
    except Exception as e:  # a missing library shows again, precisely, when the session is made
        return f"onnxruntime.preload_dlls(): {type(e).__name__}: {e}"


def preflight(provider: str) -> dict:
    """Where a session on ``provider`` runs, or ProviderUnavailableError: the check stops before
    measuring anything that would be mislabelled."""
    import numpy as np
    import onnxruntime as ort
    import torch

    provider = resolve_provider(provider)
    info = {"provider": provider, "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__,
            "available_providers": ort.get_available_providers(), "device": ort.get_device(),
            "torch_cuda": torch.cuda.is_available()}
    if provider == CPU:
        return info
    info["preload"] = preload()
    if provider not in info["available_providers"]:
        raise ProviderUnavailableError(
            f"{provider} is not in this onnxruntime ({ort.__file__}: {', '.join(info['available_providers'])}); "
            "install onnxruntime-gpu first on PYTHONPATH (docs/gpu.md)")
    if not torch.cuda.is_available():
        raise ProviderUnavailableError("PyTorch sees no CUDA GPU: the GPU check needs one (or --provider cpu)")
    torch.set_float32_matmul_precision("highest")  # PyTorch's reference in strict float32, never TF32
    sess = make_session(tiny_model(), provider, CUDA_OPTIONS if provider == CUDA else {})
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    if not np.array_equal(sess.run(None, {"x": x})[0], x + x):
        raise ProviderUnavailableError(f"{provider} gives a wrong sum on the preflight model")
    info["session_providers"] = sess.get_providers()
    return info


def tensorrt_status() -> tuple[bool, str]:
    """(usable, one line): TensorRT's provider needs libnvinfer, which onnxruntime-gpu does not ship."""
    import onnxruntime as ort

    if TRT not in ort.get_available_providers():
        return False, f"TensorRT: {TRT} is not built into this onnxruntime; skipped"
    for lib in TRT_LIBS:
        try:
            ctypes.CDLL(lib)
            return True, f"TensorRT: {lib} loads; {TRT} checked"
        except OSError:
            continue
    return False, f"TensorRT: its libraries ({TRT_LIBS[0]}) are not on this machine; {TRT} skipped"


def machine(provider: str) -> dict:
    """The latency records' ``machine``: the CPU description of zoo.bench plus the GPU by name."""
    import onnxruntime as ort
    import torch

    from ...bench.latency import machine_info

    out = dict(machine_info())
    # onnxruntime-gpu installs the module ``onnxruntime`` under another distribution name: the
    # version that runs is the module's, not the CPU package's metadata.
    out["onnxruntime"] = ort.__version__
    out["onnxruntime_device"] = ort.get_device()
    out["python"] = platform.python_version()
    out["gpu_used"] = provider != CPU
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gb=round(props.total_memory / 1e9, 1),
                   gpu_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count(),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        out["gpu"] = None
    if provider == CPU:
        out["note"] = NO_GPU_BANNER
    return out


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

