"""Accuracy after export: top-1 on a real test split for PyTorch and for every backend and
precision, and the gate that fails a build whose artifact loses accuracy.

Cosine similarity on random logits says little about what an int8 file costs; the share of test
samples classified right does. Each record says how many samples, the top-1, and ``agreement``:
the fraction of samples whose class equals PyTorch's (the fp32 model's) on the same samples. The
gate looks at both: a file may keep its top-1 while changing many answers (a trained B7's int8 file
lost 0.7 point but changed 11.5 % of its classes), and a user swapping fp32 for int8 expects the
same answers in nearly every case.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import onnxio
from ..errors import AccuracyError, ProviderUnavailableError, ZooError
from .records import computes_in, ran_in

# The gate, in top-1 fractions: an fp32 artifact may differ from PyTorch's top-1 by at most
# 0.1 point (a different runtime, same numbers up to rounding), int8/fp16 may lose 1.0 point.
MAX_FP32_DIFF = 0.001
MAX_VARIANT_LOSS = 0.01
# ... and every file, in every runtime, must give PyTorch's class for at least this share of the
# samples (zoo build --min-agreement, zoo bench --recommend --min-agreement).
MIN_AGREEMENT = 0.95
CHUNK = 1000
# The reference evaluator runs node by node in numpy (and checks batches of at most 8): a subset.
REFERENCE_SAMPLES = 200
# A variant's loss of at most 1.0 point cannot be resolved on a small subset of the split (one of 200
# samples is 0.5 point): a variant's record on such a subset (the reference evaluator's) is kept but
# not gated (verdict "not_gated"). fp32 is still gated there: it must give PyTorch's classes.
GATE_MIN_SAMPLES = 1000


def predict_torch(model, x: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), CHUNK):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + CHUNK]))).argmax(1).numpy())
    return np.concatenate(out)


class _JsRunner:
    def __init__(self, runtime: str, model: onnxio.ModelRef):
        self.runtime, self.model = runtime, model

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from onnx import numpy_helper

        from .js import NODE_DIR, TIMEOUT_S, node_executable

        (name, x), = feeds.items()
        with tempfile.TemporaryDirectory(prefix="zoo-acc-") as d, onnxio.as_path(self.model, "zoo-acc-") as model:
            (Path(d) / "input.pb").write_bytes(numpy_helper.from_array(np.ascontiguousarray(x), name).SerializeToString())
            data = model.with_name(model.name + onnxio.DATA_SUFFIX)  # a model file's external data, beside it
            cmd = [node_executable() or "node", str(NODE_DIR / "predict.mjs"), "--runtime", self.runtime,
                   *(["--external-data", data.name] if data.is_file() else []), str(model), str(Path(d) / "input.pb")]
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=NODE_DIR)
        if proc.returncode == 3:
            raise ProviderUnavailableError(proc.stderr.strip().removeprefix("UNAVAILABLE: ")[:300])
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise ZooError(f"predict.mjs exited with status {proc.returncode}: {(lines or [''])[0][:300]}")
        out = json.loads(proc.stdout)
        return {out["output"]: np.asarray(out["data"], dtype=np.float32).reshape(out["dims"])}


@dataclass
class JsBackend:
    """onnxruntime-node or onnxruntime-web (wasm), run once per model file over the whole split."""

    runtime: str  # "node" | "web"
    provider = None
    max_batch = None
    chunk = 1 << 30  # one Node.js process per file; predict.mjs runs 1000 rows at a time

    @property
    def name(self) -> str:
        return self.runtime

    def unavailable_reason(self) -> str | None:
        from .js import js_available

        return js_available(self.runtime)

    def version(self) -> str | None:
        from .js import js_version

        return js_version(self.runtime)

    def load(self, model: onnxio.ModelRef) -> _JsRunner:
        return _JsRunner(self.runtime, model)


def predict_runner(runner, x: np.ndarray, input_name: str, output_name: str, chunk: int) -> np.ndarray:
    out = []
    for i in range(0, len(x), chunk):
        y = runner.run({input_name: np.ascontiguousarray(x[i:i + chunk])})[output_name]
        out.append(np.asarray(y, dtype=np.float32).argmax(1))
    return np.concatenate(out)


def record(backend: str, precision: str, dataset, pred: np.ndarray | None, labels: np.ndarray,
           torch_pred: np.ndarray, runtime: str | None = None, version: str | None = None,
           verdict: str = "pass", reason: str | None = None, compute_precision: str | None = None) -> dict:
    n = len(labels)
    return {
        "backend": backend, "runtime": runtime or backend, "version": version, "precision": precision,
        "dataset": dataset.name, "dataset_sha256": dataset.sha256, "split": "test", "samples": n,
        "top1": None if pred is None else float((pred == labels).mean()),
        "agreement": None if pred is None else float((pred == torch_pred[:n]).mean()),
        "torch_top1": float((torch_pred[:n] == labels).mean()),
        "verdict": verdict, "reason": reason, "compute_precision": compute_precision,
    }


def gate(rec: dict, min_agreement: float = MIN_AGREEMENT) -> str | None:
    """Why ``rec`` fails the accuracy gate, or None: top-1 (fp32 within 0.1 point of PyTorch, a
    lower precision losing at most 1.0 point) and agreement with PyTorch's classes (at least
    ``min_agreement``). A record computed in a lower precision than its file's (OpenVINO's default,
    bf16) is judged as that precision."""
    if rec["top1"] is None:
        return None
    diff = rec["top1"] - rec["torch_top1"]
    ran = ran_in(rec)
    what = rec["precision"] + (f" (run in {ran})" if ran != rec["precision"] else "")
    if ran == "fp32" and abs(diff) > MAX_FP32_DIFF:
        return (f"fp32 top-1 {rec['top1']:.2%} on {rec['backend']} is {abs(diff) * 100:.2f} points off PyTorch's "
                f"{rec['torch_top1']:.2%} (max {MAX_FP32_DIFF * 100:.1f})")
    if ran != "fp32" and -diff > MAX_VARIANT_LOSS:
        return (f"{what} top-1 {rec['top1']:.2%} on {rec['backend']} loses {-diff * 100:.2f} points "
                f"against PyTorch's {rec['torch_top1']:.2%} (max {MAX_VARIANT_LOSS * 100:.1f})")
    if rec.get("agreement") is not None and rec["agreement"] < min_agreement:
        return (f"{what} on {rec['backend']} gives PyTorch's class for {rec['agreement']:.2%} of the samples "
                f"(min {min_agreement:.0%}; top-1 {rec['top1']:.2%} against {rec['torch_top1']:.2%})")
    return None


def measure(model, files: dict[str, tuple[str, onnxio.ModelRef]], dataset, backends, *, input_name: str = "input",
            output_name: str = "logits", min_agreement: float = MIN_AGREEMENT, progress=lambda m: None) -> list[dict]:
    """Accuracy records: PyTorch, then each model file (``{path: (precision, bytes)}``) on each
    backend. A backend that is unavailable, or cannot load a file, gets an "unavailable" record;
    a record over the gate gets verdict "fail" (see :func:`raise_for_accuracy`)."""
    x, y = dataset.x_test, dataset.y_test
    torch_pred = predict_torch(model, x)
    records = [record("torch", "fp32", dataset, torch_pred, y, torch_pred, runtime="torch", version=_torch_version())]
    progress(f"accuracy: PyTorch top-1 {records[0]['top1']:.2%} on {len(y)} {dataset.name} test samples")
    for precision, data in files.values():
        for b in backends:
            reason = b.unavailable_reason()
            n = min(len(y), REFERENCE_SAMPLES) if b.max_batch is not None else len(y)
            pred, ran = None, None
            if reason is None:
                try:
                    chunk = getattr(b, "chunk", None) or b.max_batch or CHUNK
                    runner = b.load(data)
                    ran = computes_in(runner, precision)
                    pred = predict_runner(runner, x[:n], input_name, output_name, chunk)
                except ProviderUnavailableError as e:
                    reason = str(e)
                except Exception as e:  # noqa: BLE001 - a runtime that cannot load or run this file: said, not hidden
                    reason = f"{b.name} cannot run the {precision} model: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            rec = record(b.name, precision, dataset, pred, y[:n], torch_pred, b.runtime, b.version(),
                         verdict="unavailable" if pred is None else "pass", reason=reason, compute_precision=ran)
            if pred is not None and ran_in(rec) != "fp32" and n < min(len(y), GATE_MIN_SAMPLES):  # a subset
                rec.update(verdict="not_gated", reason=f"{n}-sample subset: recorded, not gated (the 1.0-point gate "
                                                        f"needs at least {GATE_MIN_SAMPLES} samples)")
            elif why := gate(rec, min_agreement):
                rec.update(verdict="fail", reason=why)
            records.append(rec)
            progress(_line(rec))
    return records


def raise_for_accuracy(records: list[dict], what: str) -> None:
    for rec in records:
        if rec["verdict"] == "fail":
            raise AccuracyError(f"{what}: accuracy gate: {rec['reason']}")


def _line(rec: dict) -> str:
    if rec["top1"] is None:
        return f"accuracy {rec['precision']} {rec['backend']}: unavailable ({rec['reason']})"
    ran = f" (run in {rec['compute_precision']})" if rec.get("compute_precision") else ""
    return (f"accuracy {rec['precision']}{ran} {rec['backend']}: top-1 {rec['top1']:.2%} (PyTorch {rec['torch_top1']:.2%}), "
            f"agreement {rec['agreement']:.2%} on {rec['samples']}: {rec['verdict']}")


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]
