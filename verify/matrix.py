"""The parity matrix: one artifact against its PyTorch model, on every backend, batch size and
input distribution. Each backend gets one record (worst case over the cases); a failure names the
check (names, shapes or values), the output and the worst error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import onnxio
from ..errors import (
    AtolError,
    InputError,
    NameMismatchError,
    ParityError,
    ProviderUnavailableError,
    ShapeError,
)
from ..jsonio import finite
from ..model.repro import stream, to_float32
from ..spec import GPU_PROVIDERS
from .backends import Backend, provider_backends, runtime_backends
from .parity import Tolerance, check_outputs, error_metrics, tolerance_for
from .records import computes_in, parity_record

DEFAULT_BATCH_SIZES = (1, 2, 7, 64)
DISTRIBUTIONS = ("normal", "normal_x10", "zeros")
_CHECK_OF = {NameMismatchError: "names", ShapeError: "shapes", AtolError: "values"}


@dataclass
class MatrixOptions:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    distributions: tuple[str, ...] = DISTRIBUTIONS
    providers: list[str] | None = None  # None: the CPU plus every available GPU provider
    runtimes: list[str] | None = None  # None: every installed independent runtime
    atol: float | None = None
    rtol: float | None = None
    backends: list[Backend] = field(default_factory=list)  # overrides providers/runtimes when set

    def __post_init__(self):
        if not self.batch_sizes or any((not isinstance(b, int)) or b < 1 for b in self.batch_sizes):
            raise InputError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        bad = [d for d in self.distributions if d not in DISTRIBUTIONS]
        if bad:
            raise InputError(f"unknown input distribution {bad[0]!r}; valid: {', '.join(DISTRIBUTIONS)}")

    def resolve_backends(self) -> list[Backend]:
        if self.backends:
            return list(self.backends)
        return provider_backends(self.providers) + runtime_backends(self.runtimes)


def make_input(input_dim: int, batch: int, distribution: str, seed: int) -> np.ndarray:
    """Seeded inputs, the same for every backend, run and machine: each (batch, distribution) case
    draws from its own ``matrix`` stream of the reproducibility rule (:mod:`zoo.model.repro`)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown input distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")
    if distribution == "zeros":
        return np.zeros((batch, input_dim), dtype=np.float32)
    scale = 10.0 if distribution == "normal_x10" else 1.0
    return to_float32(stream("matrix", seed, batch, distribution).normal((batch, input_dim), scale))


@dataclass
class Case:
    batch: int
    distribution: str
    x: np.ndarray
    expected: dict[str, np.ndarray]


@torch.no_grad()
def reference_cases(model: torch.nn.Module, input_dim: int, output_name: str, seed: int, options: MatrixOptions,
                    device: str = "cpu") -> list[Case]:
    model = model.to(device).eval()
    cases = []
    for b in options.batch_sizes:
        for d in options.distributions:
            x = make_input(input_dim, b, d, seed)
            y = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
            cases.append(Case(b, d, x, {output_name: y}))
    model.to("cpu")
    return cases


def check_backend(backend: Backend, model: onnxio.ModelRef, cases: list[Case], input_name: str, precision: str,
                  tol: Tolerance, reference: str = "torch-cpu", label: str | None = None,
                  declared: dict[str, list] | None = None) -> dict:
    """One backend over every case: a parity record (never raises for a parity failure).
    ``declared``: the model's :func:`declared_outputs`, when the caller has them already."""
    usable = [c for c in cases if backend.max_batch is None or c.batch <= backend.max_batch]
    base = backend.record_base()
    rec = parity_record(backend=base["backend"], runtime=base["runtime"], version=base["version"],
                        provider=base["provider"], optimization=base["optimization"], reference=reference,
                        precision=precision, tol=tol, batch_sizes=[c.batch for c in usable],
                        distributions=[c.distribution for c in usable], label=label)
    if declared is None:
        declared = declared_outputs(model)
    reason = backend.unavailable_reason() or getattr(backend, "unsupported", {}).get(precision)
    if reason is None:
        try:
            runner = backend.load(model)
        except ProviderUnavailableError as e:
            reason = str(e)
        except Exception as e:  # a runtime that cannot even load the model fails it
            return rec | {"verdict": "fail", "failed_check": "values",
                          "reason": f"{backend.name} cannot load the model: {type(e).__name__}: {str(e)[:300]}"}
    if reason is not None:
        rec.update(verdict="unavailable", reason=reason)
        return rec
    if label is None and getattr(runner, "label", None):  # what the runtime chose (OpenVINO's precision)
        rec["label"] = runner.label
    rec["compute_precision"] = computes_in(runner, precision)  # bf16: not an fp32 figure
    worst: dict = {}
    means = []
    for c in usable:
        what = f"{backend.name} batch {c.batch} {c.distribution}"
        try:
            check_declared(declared, c, what)
            got = runner.run({input_name: c.x})
            metrics = check_outputs(got, c.expected, tol, what)
        except ParityError as e:
            rec.update(verdict="fail", failed_check=_CHECK_OF.get(type(e), "values"), reason=str(e))
            if isinstance(e, AtolError):  # still report how far off the values are
                out = next(iter(c.expected))
                metrics = {out: error_metrics(got[out], c.expected[out], tol)}
                _merge(worst, metrics, means)
            break
        except Exception as e:  # a runtime that cannot run the model at all fails it
            rec.update(verdict="fail", failed_check="values", reason=f"{what}: {type(e).__name__}: {str(e)[:300]}")
            break
        _merge(worst, metrics, means)
    if worst:
        rec.update({k: worst[k] for k in ("output", "max_abs_error", "max_rel_error", "p99_abs_error",
                                          "cosine_similarity", "rel_l2_error", "top1_agreement")})
        rec["mean_abs_error"] = None if None in means else float(np.mean(means))
    return finite(rec)  # a non-finite output has no error figure: null, never NaN/Infinity


def declared_outputs(model: onnxio.ModelRef) -> dict[str, list]:
    """The graph's outputs as declared: name -> dims (int, or str for a symbolic dim)."""
    proto = onnxio.load(model, external=False)
    return {o.name: [d.dim_param or int(d.dim_value) for d in o.type.tensor_type.shape.dim]
            for o in proto.graph.output}


def check_declared(declared: dict[str, list], case: Case, what: str) -> None:
    """Names, then shapes, as the graph declares them: a runtime may not even run a model whose
    batch axis is fixed, and that must read as a shape failure, not a crash."""
    if list(declared) != list(case.expected):
        raise NameMismatchError(f"{what}: output names {list(declared)} != expected {list(case.expected)}")
    for name, dims in declared.items():
        want = case.expected[name].shape
        fixed_mismatch = len(dims) != len(want) or any(isinstance(d, int) and d > 0 and d != w for d, w in zip(dims, want))
        if fixed_mismatch:
            raise ShapeError(f"{what}: output {name!r} is declared {dims}, cannot give shape {list(want)}"
                             + (" (the batch axis is not dynamic)" if dims and isinstance(dims[0], int) else ""))


def _merge(worst: dict, metrics: dict, means: list) -> None:
    """Fold one case's metrics into the worst so far; None (a non-finite output) is the worst value."""
    def bad(a, b, sign=1):  # the worse of a and b; None is worst of all
        return None if a is None or b is None else max(a * sign, b * sign) * sign

    for out, m in metrics.items():
        means.append(m["mean_abs_error"])
        if not worst or m["max_abs_error"] is None or (worst["max_abs_error"] is not None
                                                       and m["max_abs_error"] >= worst["max_abs_error"]):
            worst["output"] = out
        for k in ("max_abs_error", "max_rel_error", "p99_abs_error", "rel_l2_error"):
            worst[k] = bad(worst.get(k, 0.0), m[k])
        worst["cosine_similarity"] = bad(worst.get("cosine_similarity", 1.0), m["cosine_similarity"], -1)
        if m["top1_agreement"] is not None:
            worst["top1_agreement"] = min(worst.get("top1_agreement") or 1.0, m["top1_agreement"])
        else:
            worst.setdefault("top1_agreement", None)


def run_matrix(model: torch.nn.Module, onnx_model: onnxio.ModelRef, *, input_dim: int, seed: int,
               input_name: str = "input", output_name: str = "logits", precision: str = "fp32",
               options: MatrixOptions | None = None, progress=lambda m: None) -> list[dict]:
    """Parity records for every backend; references from PyTorch on the CPU (and on CUDA for GPU
    providers when PyTorch sees a GPU)."""
    options = options or MatrixOptions()
    cpu_cases = reference_cases(model, input_dim, output_name, seed, options)
    cuda_cases = None
    declared = declared_outputs(onnx_model)  # parsing B7's proto takes most of a second: once per model
    records = []
    for backend in options.resolve_backends():
        tol = tolerance_for(precision, options.atol, options.rtol, backend=backend.name)
        rec = check_backend(backend, onnx_model, cpu_cases, input_name, precision, tol,
                            label=_label(backend, precision), declared=declared)
        records.append(rec)
        progress(_line(rec))
        gpu = backend.provider in GPU_PROVIDERS
        if gpu and rec["verdict"] != "unavailable" and torch.cuda.is_available():
            if cuda_cases is None:
                cuda_cases = reference_cases(model, input_dim, output_name, seed, options, device="cuda")
            rec2 = check_backend(backend, onnx_model, cuda_cases, input_name, precision, tol, reference="torch-cuda",
                                 label=_label(backend, precision), declared=declared)
            records.append(rec2)
            progress(_line(rec2))
    return records


def _label(backend: Backend, precision: str) -> str | None:
    if precision == "fp16" and backend.provider == "CPUExecutionProvider":
        return "fp16 on the CPU provider (checked; the fp16 artifact is meant for GPU providers)"
    return None


def _line(rec: dict) -> str:
    err = rec["max_abs_error"]
    err_s = "-" if err is None else f"{err:.2e}"
    extra = f" ({rec['reason']})" if rec["verdict"] != "pass" and rec["reason"] else ""
    ran = f" (run in {rec['compute_precision']})" if rec.get("compute_precision") else ""
    return f"{rec['precision']}{ran} {rec['backend']} vs {rec['reference']}: {rec['verdict']}, max abs {err_s}{extra}"


def raise_for_failures(records: list[dict], what: str) -> None:
    """The first failed record as its typed error (names, shapes or values)."""
    for rec in records:
        if rec["verdict"] == "fail":
            cls = {"names": NameMismatchError, "shapes": ShapeError}.get(rec["failed_check"], AtolError)
            raise cls(f"{what}: {rec['reason']}")


def build_verifier(options: MatrixOptions | None = None):
    """The verifier ``zoo build`` runs on every model: the matrix, failing the model on any failure."""

    def verifier(art, progress) -> list[dict]:
        spec = art.request.spec
        records = run_matrix(art.model, art.model_ref, input_dim=art.request.effective_input_dim,
                             seed=art.request.seed, input_name=spec.input_name, output_name=spec.output_name,
                             options=options, progress=progress)
        raise_for_failures(records, art.request.name)
        return records

    return verifier
