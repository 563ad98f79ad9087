"""Backends that run an ONNX model: ONNX Runtime execution providers and independent runtimes.

Each backend says whether it is available (and why not), its version, and runs a model given as
bytes or as the path of a model file (whose external data lies beside it: ``zoo.onnxio.ModelRef``). A provider that is asked for and missing is *unavailable*, never replaced by the CPU:
ONNX Runtime falls back silently, so the session's actual providers are checked.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from .. import onnxio
from ..errors import InputError, ProviderUnavailableError
from ..spec import GPU_PROVIDERS, PY_RUNTIMES
from ..versions import dist_version, install_hint
from .records import OPENVINO_PRECISIONS

OPT_LEVELS = ("disabled", "basic", "extended", "all")
# The reference evaluator is pure numpy, node by node: it checks small batches only.
REFERENCE_MAX_BATCH = 8


class Runner:
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Backend:
    """Base: subclasses set ``runtime`` and implement ``unavailable_reason`` and ``load``."""

    runtime: str = ""
    provider: str | None = None
    optimization: str | None = None
    max_batch: int | None = None

    @property
    def name(self) -> str:
        parts = [self.runtime] + [p for p in (self.provider, self.optimization) if p]
        return ":".join(parts)

    def version(self) -> str | None:
        return None

    def unavailable_reason(self) -> str | None:
        return None

    def load(self, model: onnxio.ModelRef) -> Runner:  # pragma: no cover - interface
        raise NotImplementedError

    def record_base(self) -> dict:
        return {
            "backend": self.name,
            "runtime": self.runtime,
            "version": self.version(),
            "provider": self.provider,
            "optimization": self.optimization,
        }


class _OrtRunner(Runner):
    def __init__(self, sess):
        self.sess = sess
        self.outputs = [o.name for o in sess.get_outputs()]

    def run(self, feeds):
        return dict(zip(self.outputs, self.sess.run(None, feeds)))


@dataclass
class OrtBackend(Backend):
    runtime: str = "onnxruntime"
    provider: str | None = "CPUExecutionProvider"
    optimization: str | None = "all"
    threads: int | None = None

    def version(self):
        import onnxruntime as ort

        return ort.__version__

    def unavailable_reason(self):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.provider not in available:
            return f"{self.provider} is not available in this onnxruntime ({', '.join(available)})"
        if self.provider in GPU_PROVIDERS:
            try:
                import torch

                if not torch.cuda.is_available():
                    return f"{self.provider} is built in, but no CUDA GPU is visible"
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
        return None

    def session(self, model: onnxio.ModelRef):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization or "all"]
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        sess = ort.InferenceSession(onnxio.ort_source(model), sess_options=opts, providers=[self.provider])
        actual = sess.get_providers()
        if actual[0] != self.provider:  # onnxruntime fell back silently
            raise ProviderUnavailableError(f"{self.provider} was asked for but the session runs on {actual[0]}")
        return sess

    def load(self, model: onnxio.ModelRef) -> Runner:
        return _OrtRunner(self.session(model))


class _ReferenceRunner(Runner):
    def __init__(self, model: onnxio.ModelRef):
        from onnx.reference import ReferenceEvaluator

        proto = onnxio.load(model)
        self.outputs = [o.name for o in proto.graph.output]
        self.ev = ReferenceEvaluator(proto)

    def run(self, feeds):
        # Its sigmoid overflows exp() for large inputs and warns, though the result is right.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return dict(zip(self.outputs, self.ev.run(None, feeds)))


@dataclass
class ReferenceBackend(Backend):
    runtime: str = "reference"
    max_batch: int | None = REFERENCE_MAX_BATCH

    def version(self):
        return "onnx " + (dist_version("onnx") or "?")

    def load(self, model: onnxio.ModelRef) -> Runner:
        return _ReferenceRunner(model)


@dataclass
class _PackagedBackend(Backend):
    """An independent runtime installed as the pip package named ``runtime`` (the runtimes extra)."""

    def version(self):
        return dist_version(self.runtime)

    def unavailable_reason(self):
        return None if self.version() else f"{self.runtime} is not installed ({install_hint('runtimes')})"


def import_openvino():
    """The ``openvino`` module, imported without its telemetry: importing it runs OpenVINO's model
    converter's telemetry, which writes ``$HOME/intel/openvino_ga_cid`` and ``$HOME/intel/stats``
    (measured with openvino 2026.4). The converter imports ``openvino_telemetry`` optionally and
    falls back to its own stub where that package is missing; the zoo makes it missing for the
    import only (a ``None`` entry in ``sys.modules``, removed afterwards), so nothing is written and
    no environment variable is changed for anyone else. See docs/reliability.md."""
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` raises ImportError
    try:
        import openvino
    finally:
        if blocked and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
    return openvino


class _OpenVinoRunner(Runner):
    def __init__(self, model: onnxio.ModelRef, precision_hint: str | None = "f32"):
        ov = import_openvino()

        core = ov.Core()
        config = {} if precision_hint is None else {"INFERENCE_PRECISION_HINT": precision_hint}
        # Runtimes that read models from files get bytes in a private temporary folder, removed after loading.
        with onnxio.as_path(model, "zoo-verify-") as path:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        # What the CPU plugin actually computes in: its default is bf16 on CPUs with AVX-512 BF16 / AMX.
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # "bf16"
        self.label = (None if precision_hint
                      else f"OpenVINO's default inference precision on this CPU: {self.inference_precision}")
        self.computes_in = OPENVINO_PRECISIONS.get(self.inference_precision, self.inference_precision)
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]

    def run(self, feeds):
        req = self.compiled.create_infer_request()
        res = req.infer({name: np.ascontiguousarray(feeds[name]) for name in self.inputs})
        return {name: np.array(res[out]) for name, out in zip(self.outputs, self.compiled.outputs)}


@dataclass
class OpenVinoBackend(_PackagedBackend):
    """OpenVINO's CPU plugin at f32: the parity check of the artifact itself."""

    runtime: str = "openvino"
    precision_hint: str | None = "f32"

    def load(self, model: onnxio.ModelRef) -> Runner:
        return _OpenVinoRunner(model, self.precision_hint)


@dataclass
class OpenVinoDefaultBackend(OpenVinoBackend):
    """OpenVINO as a consumer gets it: no INFERENCE_PRECISION_HINT, so on a CPU with AVX-512 BF16
    (or AMX) an fp32 model runs in bf16. Checked with its own, looser tolerances
    (``verify.parity.BACKEND_TOLERANCES``); the record's label says which precision it ran in."""

    precision_hint: str | None = None

    @property
    def name(self) -> str:
        return "openvino:default"


class _TractRunner(Runner):
    def __init__(self, model: onnxio.ModelRef):
        import tract

        # Graph names from the proto: tract reports its nodes' names instead.
        proto = onnxio.load(model, external=False)
        self.inputs = [i.name for i in proto.graph.input]
        self.outputs = [o.name for o in proto.graph.output]
        with onnxio.as_path(model, "zoo-verify-") as path:
            # The symbolic batch axis stays symbolic: one optimised plan serves every batch size.
            self.runnable = tract.onnx().load(str(path)).into_model().into_runnable()

    def run(self, feeds):
        out = self.runnable.run([np.ascontiguousarray(feeds[n]) for n in self.inputs])
        return {name: t.to_numpy() for name, t in zip(self.outputs, out)}


@dataclass
class TractBackend(_PackagedBackend):
    runtime: str = "tract"
    # tract's ONNX front end types a float16 Gemm's output as float32 and refuses the model.
    unsupported = {"fp16": "tract does not run float16 Gemm (its ONNX translator types the output as float32)"}

    def load(self, model: onnxio.ModelRef) -> Runner:
        return _TractRunner(model)


def provider_backends(providers: list[str] | None, opt_levels=("disabled", "all")) -> list[Backend]:
    """ONNX Runtime backends: the CPU at each optimisation level, plus the GPU providers asked for
    (by default, those this onnxruntime has)."""
    import onnxruntime as ort

    if providers is None:
        providers = ["CPUExecutionProvider"] + [
            p for p in GPU_PROVIDERS if p in ort.get_available_providers()
        ]
    out: list[Backend] = []
    for p in providers:
        levels = opt_levels if p == "CPUExecutionProvider" else ("all",)
        out += [OrtBackend(provider=p, optimization=level) for level in levels]
    return out


RUNTIME_BACKENDS = dict(zip(PY_RUNTIMES, (ReferenceBackend, OpenVinoBackend, OpenVinoDefaultBackend, TractBackend)))


def runtime_backends(runtimes: list[str] | None) -> list[Backend]:
    """Independent runtimes; by default every installed one."""
    if runtimes is None:
        backends = [cls() for cls in RUNTIME_BACKENDS.values()]
        return [b for b in backends if b.unavailable_reason() is None]
    unknown = [r for r in runtimes if r not in RUNTIME_BACKENDS]
    if unknown:
        raise InputError(f"unknown runtime {unknown[0]!r}; valid runtimes: {', '.join(RUNTIME_BACKENDS)}")
    return [RUNTIME_BACKENDS[r]() for r in runtimes]


os.environ.setdefault("OPENVINO_TELEMETRY", "0")
