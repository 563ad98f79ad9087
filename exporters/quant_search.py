"""Accuracy-driven quantisation: a search per model and precision instead of one fixed recipe.

The fixed recipes (:mod:`.int8`, :mod:`.int8_static`, :mod:`.int4`) keep PyTorch's class for 97 %
of a trained B4's test samples and for 58 % of a trained B7's. When the fixed recipe misses, the
search walks recipes from cheapest to safest (for static int8: MinMax, Percentile and Entropy
calibration, then symmetric activations, then the squeeze-excitation layers kept fp32, then the
stem, head and classifier too), each judged by its agreement with the fp32 model's classes on a
**held-out part of the training split** (never the test split the accuracy gate reports on). If no
recipe reaches the target it measures each quantised layer's sensitivity under the best recipe that
keeps every layer quantised (how far the logits move when that layer alone is rounded as the recipe
rounds it, :func:`sensitivity`) and falls layers back to fp32 in :func:`fallback_order` (the most
error per weight first among the layers that matter: a fp32 layer costs time in proportion to its
weights), one at a time, then in growing steps, then bisecting back to the fewest that pass, until
the held-out agreement holds.

Splits of the training split: rows ``[0, 512)`` calibrate (as the fixed static recipe), rows
``[512, 512 + HELDOUT_SAMPLES)`` judge. The target is the gate's floor plus :data:`MARGIN`: the
test split is another sample, and a file that just passes on one split can miss on the other.

Reproducible: each try's file is a pure function of the fp32 model, the training split and the
recipe (ranges rounded outward, :func:`.int8_static.round_outward`), and the choice between tries
is made on predicted classes, so the same inputs on the same machine give the same bytes. A search
cut short by its time budget (``--quant-budget``) says so (``stopped: "budget"``); the fixed recipe
is always tried first, so a file always comes out.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import onnxio
from ..errors import CalibrationError, ExportError
from .int8 import gemm_to_matmul, int8_nodes, per_channel_helps
from .int8_static import CALIBRATION_SAMPLES, calibration_inputs, measure_ranges

SEARCHED = ("int8", "int8_static", "int4")
HELDOUT_SAMPLES = 6000
MIN_HELDOUT = 200
# Held-out agreement the search aims at above the gate's floor. Sampling alone (6,000 held-out and
# 8,000 test samples at 97 %) puts one standard deviation at 0.29 point, and the held-out rows were
# trained on: their answers sit further from a boundary, so a rounding flips fewer of them. Measured
# (B0 and B4, seven searched files): the test split's agreement was 0.07-0.70 point under the held-out's.
MARGIN = 0.01
MAX_TOP1_LOSS = 0.01  # the accuracy gate's rule for a lower precision (zoo.verify.accuracy)
DEFAULT_BUDGET_S = 600.0
SENSITIVITY_SAMPLES = 64
SINGLE_STEPS = 4  # fall back this many layers one at a time, then in steps growing 1.5x, then bisect
PREDICT_CHUNK = 256

# Layer kinds, from the exporter's node names (module paths): what the recipes exclude by group.
GROUPS = {"se": ("se_reduce", "se_expand"), "ends": ("stem", "head", "classifier")}


def layer_kind(name: str) -> str:
    scope = name.rsplit("/", 1)[0]
    if scope.startswith("stem"):
        return "stem"
    if scope.startswith("head"):
        return "head"
    if scope.startswith("classifier"):
        return "classifier"
    for part, kind in ((".se.reduce", "se_reduce"), (".se.expand", "se_expand"), (".expand", "expand"),
                       (".project", "project")):
        if part in scope:
            return kind
    return "other"


@dataclass(frozen=True)
class Recipe:
    """One way to quantise: what varies between the search's tries (fp32 layers apart)."""

    calibration: str | None = None  # int8_static: minmax | percentile | entropy
    per_channel: bool | None = True  # int8 / int8_static; None: dynamic int8's weight heuristic
    symmetric_activations: bool = False  # int8_static: int8 around zero instead of uint8 + zero point
    block_size: int | None = None  # int4
    exclude: tuple[str, ...] = ()  # groups of GROUPS kept fp32

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        parts = []
        if self.calibration:
            parts.append(self.calibration)
        if self.block_size:
            parts.append(f"blocks of {self.block_size}")
        if self.per_channel is not None and self.block_size is None:
            parts.append("per-channel" if self.per_channel else "per-tensor")
        elif self.block_size is None:
            parts.append("per-channel by heuristic")
        if self.calibration:
            parts.append("symmetric int8 activations" if self.symmetric_activations else "uint8 activations")
        if self.exclude:
            parts.append("fp32 " + "+".join({"se": "SE", "ends": "stem/head/classifier"}[g] for g in self.exclude))
        return ", ".join(parts)


def ladder(precision: str, step: int, best: Recipe, fixed_per_channel: bool = True) -> Recipe | None:
    """Recipe number ``step`` (0: the fixed one) of ``precision``, cheapest to safest, built on the
    ``best`` so far: first what costs no speed (calibration, scales), then whole kinds of layers
    kept fp32; None after the last."""
    if precision == "int8_static":
        steps = [lambda: Recipe(calibration="minmax"), lambda: Recipe(calibration="percentile"),
                 lambda: Recipe(calibration="entropy"), lambda: replace(best, symmetric_activations=True)]
    elif precision == "int8":  # the fixed recipe's heuristic choice first (resolved by the caller), then the other
        steps = [lambda: Recipe(per_channel=fixed_per_channel), lambda: Recipe(per_channel=not fixed_per_channel)]
    else:
        steps = [lambda: Recipe(per_channel=None, block_size=32), lambda: Recipe(per_channel=None, block_size=16)]
    steps += [lambda: replace(best, exclude=("se",)), lambda: replace(best, exclude=("se", "ends"))]
    return steps[step]() if step < len(steps) else None


def make_file(precision: str, fp32_ref: onnxio.ModelRef, recipe: Recipe, fp32_layers, *, cal_x=None, ranges=None,
              input_name: str = "input", what: str = "model", search: dict | None = None) -> bytes:
    """The file of ``precision`` with ``recipe`` and ``fp32_layers`` (MatMul node names) kept fp32."""
    layers = sorted(fp32_layers)
    if precision == "int8_static":
        from .int8_static import quantize_int8_static

        return quantize_int8_static(fp32_ref, cal_x, input_name=input_name, per_channel=bool(recipe.per_channel),
                                    calibration=recipe.calibration, symmetric_activations=recipe.symmetric_activations,
                                    exclude=layers, ranges=ranges, what=what, search=search)
    if precision == "int8":
        from .int8 import quantize_int8

        return quantize_int8(fp32_ref, per_channel=recipe.per_channel, exclude=layers, search=search)
    if precision == "int4":
        from .int4 import quantize_int4

        return quantize_int4(fp32_ref, block_size=recipe.block_size or 32, exclude=layers, search=search)
    raise ExportError(f"no quantisation search for {precision!r}; valid: {', '.join(SEARCHED)}")


def predict(model: onnxio.ModelRef, x: np.ndarray, input_name: str = "input", threads: int | None = None) -> np.ndarray:
    """Classes ONNX Runtime (CPU) gives for ``x``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])
    out = [sess.run(None, {input_name: np.ascontiguousarray(x[i:i + PREDICT_CHUNK])})[0].argmax(1)
           for i in range(0, len(x), PREDICT_CHUNK)]
    return np.concatenate(out)


# --- sensitivity: the error each quantised layer adds at its output, fed fp32 inputs ---------------

def _fake_act(x: np.ndarray, precision: str, recipe: Recipe, rng: tuple[float, float] | None) -> np.ndarray:
    """``x`` rounded as the recipe's kernel rounds its activations (ONNX Runtime's formulas)."""
    if precision == "int4":  # accuracy_level 4: int8 per row and block of the reduction axis, symmetric
        bs = recipe.block_size or 32
        k = x.shape[1]
        pad = (-k) % bs
        xb = np.pad(x, ((0, 0), (0, pad))).reshape(len(x), -1, bs)
        s = np.abs(xb).max(axis=2, keepdims=True) / 127.0
        s[s == 0] = 1.0
        return (np.clip(np.round(xb / s), -127, 127) * s).reshape(len(x), -1)[:, :k]
    lo, hi = rng if rng is not None else (float(x.min()), float(x.max()))  # dynamic: the batch's range
    if recipe.symmetric_activations:
        s = max(abs(lo), abs(hi)) / 127.0 or 1.0
        return np.clip(np.round(x / s), -127, 127) * s
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / 255.0 or 1.0
    zp = np.clip(np.round(-lo / s), 0, 255)
    return (np.clip(np.round(x / s) + zp, 0, 255) - zp) * s


def _fake_weight(w: np.ndarray, precision: str, recipe: Recipe, per_channel: bool) -> np.ndarray:
    if precision == "int4":  # symmetric 4-bit blocks along the reduction axis (rows of W), one scale each
        bs = recipe.block_size or 32
        k = w.shape[0]
        pad = (-k) % bs
        wb = np.pad(w, ((0, pad), (0, 0))).reshape(-1, bs, w.shape[1])
        s = np.abs(wb).max(axis=1, keepdims=True) / 8.0
        s[s == 0] = 1.0
        return (np.clip(np.round(wb / s), -8, 7) * s).reshape(-1, w.shape[1])[:k]
    amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    s = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.round(w / s), -127, 127) * s


class _TorchGraph:
    """The exported graph run op by op in PyTorch on one thread (the paper flavour needs four ops:
    MatMul, Add, Mul, Sigmoid): the search swaps one layer's MatMul for its rounded version and sees
    what reaches the logits, recomputing only from that layer on. One thread: this runs beside
    other work, and BLAS threads fighting for busy cores made it 20x slower here."""

    def __init__(self, proto: onnx.ModelProto, input_name: str):
        import torch

        self.ops = {"MatMul": torch.matmul, "Add": torch.add, "Mul": torch.mul, "Sigmoid": torch.sigmoid}
        self.nodes = list(proto.graph.node)
        self.supported = all(n.op_type in self.ops for n in self.nodes)
        self.consts = {t.name: torch.from_numpy(np.array(numpy_helper.to_array(t), dtype=np.float32))
                       for t in proto.graph.initializer}
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.input_name, self.output = input_name, proto.graph.output[0].name
        self.cache: dict = {}

    def run(self, x: np.ndarray) -> np.ndarray:
        """The fp32 logits; every tensor is kept for :meth:`run_swapped`."""
        import torch

        self.cache = {self.input_name: torch.from_numpy(x)}
        with torch.no_grad():
            for n in self.nodes:
                self.cache[n.output[0]] = self.ops[n.op_type](*[self._get(a, {}) for a in n.input])
        return self.cache[self.output].numpy()

    def _get(self, name: str, local: dict):
        return local[name] if name in local else self.cache[name] if name in self.cache else self.consts[name]

    def run_swapped(self, name: str, fn) -> np.ndarray:
        """The logits with node ``name`` computed by ``fn(input, weight)`` (numpy in, numpy out)."""
        import torch

        local: dict = {}
        with torch.no_grad():
            for n in self.nodes[self.index[name]:]:
                args = [self._get(a, local) for a in n.input]
                local[n.output[0]] = (torch.from_numpy(fn(*(a.numpy() for a in args))) if n.name == name
                                      else self.ops[n.op_type](*args))
        return local[self.output].numpy()


def sensitivity(fp32_ref: onnxio.ModelRef, precision: str, recipe: Recipe, x: np.ndarray, *,
                ranges: dict | None = None, input_name: str = "input", threads: int | None = None,
                deadline: float | None = None) -> list[dict]:
    """Per quantised layer, most sensitive first:

    - ``logit_error``: ||z_l - z|| / ||z||, z the fp32 logits and z_l the logits with only layer l
      rounded as the recipe rounds it (its input activations and its weights): what this layer's
      rounding alone does to the answer (the ranking);
    - ``rel_error``: ||Y_q - Y|| / ||Y|| at the layer's own output, fed fp32 inputs (the error the
      layer adds, not the error it inherits);
    - what explains it: the input's range and outlier ratio (max |x| over its 99.9th percentile)
      and the spread of the weight columns' scales (max over median; BatchNorm folding spreads them).

    Without numpy support for every op of the graph (another flavour), the ranking is ``rel_error``.
    """
    import torch

    prepared = gemm_to_matmul(onnxio.load(fp32_ref))
    nodes = int8_nodes(prepared)
    by_name = {n.name: n for n in prepared.graph.node}
    graph = _TorchGraph(prepared, input_name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _sensitivity(graph, prepared, nodes, by_name, precision, recipe, x, ranges, input_name, threads,
                            deadline)
    finally:
        torch.set_num_threads(threads_before)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through PyTorch (one thread, set by the caller), not numpy's BLAS and its threads."""
    import torch

    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()


def _sensitivity(graph, prepared, nodes, by_name, precision, recipe, x, ranges, input_name, threads, deadline):
    if graph.supported:
        logits = graph.run(x)
        acts = {n: graph.cache[by_name[n].input[0]].numpy() for n in nodes}
    else:
        import onnxruntime as ort

        inputs = sorted({by_name[n].input[0] for n in nodes})
        have = {o.name for o in prepared.graph.output}
        for name in inputs:
            if name not in have:
                prepared.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        sess = ort.InferenceSession(prepared.SerializeToString(), so, providers=["CPUExecutionProvider"])
        got = dict(zip(inputs, sess.run(inputs, {input_name: x})))
        acts, logits = {n: got[by_name[n].input[0]] for n in nodes}, None
    per_channel = recipe.per_channel
    if precision == "int8" and per_channel is None:
        per_channel = per_channel_helps(prepared, nodes)
    ref_norm = float(np.linalg.norm(logits)) if logits is not None else 0.0
    ref_cls = logits.argmax(1) if logits is not None else None
    rows = []
    for name in nodes:
        node = by_name[name]
        rng = ranges.get(node.input[0]) if ranges is not None else None
        if precision == "int8_static" and rng is None:
            continue  # no range: the quantiser leaves it fp32 too
        a = acts[name]
        w = graph.consts[node.input[1]].numpy()
        wq = _fake_weight(w.astype(np.float64), precision, recipe, bool(per_channel)).astype(np.float32)
        y = _mm(a.astype(np.float64), w.astype(np.float64))
        yq = _mm(_fake_act(a.astype(np.float64), precision, recipe, rng), wq.astype(np.float64))
        norm = float(np.linalg.norm(y))
        absx = np.abs(a)
        p999 = float(np.percentile(absx, 99.9))
        col = np.abs(w).max(axis=0)
        row = {"layer": name, "kind": layer_kind(name), "weights": int(w.size),
               "rel_error": float(np.linalg.norm(yq - y) / norm) if norm > 0 else 0.0,
               "input_min": float(a.min()), "input_max": float(a.max()),
               "input_outlier": float(absx.max() / p999) if p999 > 0 else None,
               "range": list(rng) if rng is not None else None,
               "weight_scale_spread": float(col.max() / np.median(col)) if np.median(col) > 0 else None}
        if logits is not None and (deadline is None or time.perf_counter() < deadline):
            def swapped(a_, w_, wq=wq, rng=rng):
                return _mm(_fake_act(a_, precision, recipe, rng).astype(np.float32), wq)

            z = graph.run_swapped(name, swapped)
            row["logit_error"] = float(np.linalg.norm(z - logits) / ref_norm) if ref_norm > 0 else 0.0
            row["flips"] = int((z.argmax(1) != ref_cls).sum())
        rows.append(row)
    key = _rank_key(rows)
    rows.sort(key=lambda r: (-r[key], r["layer"]))
    return rows


def _rank_key(rows: list[dict]) -> str:
    """``logit_error`` where every row has it, else ``rel_error`` (a sensitivity cut short by the
    search's budget, or a graph the PyTorch runner cannot run, measured the local error only)."""
    return "logit_error" if rows and all("logit_error" in r for r in rows) else "rel_error"


# Layers whose rounding alone moves the logits by less than this share of the worst layer's are not
# worth a slot early in the fallback, however cheap.
MATTERS = 0.1


def fallback_order(rows: list[dict]) -> list[str]:
    """The order the search keeps layers fp32 in: among the layers that matter (a logit error of at
    least :data:`MATTERS` of the worst), the most error per weight first (a layer kept fp32 costs
    time in proportion to its weights: measured on B4, twelve large project layers kept fp32 took
    static int8 from 2.5x to 1.7x faster than fp32 at batch 256), then the rest by error."""
    key = _rank_key(rows)
    worst = max((r[key] for r in rows), default=0.0)
    big = [r for r in rows if worst > 0 and r[key] >= MATTERS * worst]
    rest = [r for r in rows if r not in big]
    big.sort(key=lambda r: (-r[key] / max(r["weights"], 1), r["layer"]))
    return [r["layer"] for r in big + rest]


def by_kind(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        k = out.setdefault(r["kind"], {"layers": 0})
        k["layers"] += 1
        for f in ("rel_error", "logit_error"):
            if f in r:
                k[f"sum_{f}"] = k.get(f"sum_{f}", 0.0) + r[f]
                k[f"max_{f}"] = max(k.get(f"max_{f}", 0.0), r[f])
    for k in out.values():
        for f in ("rel_error", "logit_error"):
            if f"sum_{f}" in k:
                k[f"mean_{f}"] = round(k.pop(f"sum_{f}") / k["layers"], 5)
                k[f"max_{f}"] = round(k[f"max_{f}"], 5)
    return out


# --- the search ------------------------------------------------------------------------------

@dataclass
class SearchResult:
    precision: str
    data: bytes
    recipe: Recipe
    fp32_layers: list[str]
    passed: bool
    heldout: dict
    tried: list[dict]
    stopped: str | None  # None: it found a file; "budget"; "exhausted": every try missed
    floor: float
    target: float
    budget_s: float
    seconds: float
    sensitivity: list[dict] = field(default_factory=list)

    def record(self, file: str | None = None) -> dict:
        """The manifest's ``quantization`` record (what was tried, what came out)."""
        return {"precision": self.precision, "file": file, "searched": True, "passed": self.passed,
                "recipe": self.recipe.to_dict(), "recipe_text": self.recipe.describe(),
                "fp32_layers": self.fp32_layers, "floor": self.floor, "target": self.target,
                "heldout": self.heldout, "calibration": {"split": "train", "rows": [0, CALIBRATION_SAMPLES]},
                "tried": self.tried, "stopped": self.stopped, "budget_s": self.budget_s,
                "seconds": round(self.seconds, 1),
                "sensitivity": {"samples": SENSITIVITY_SAMPLES, "by_kind": by_kind(self.sensitivity),
                                "top": [_slim(r) for r in self.sensitivity[:12]]} if self.sensitivity else None}

    def line(self) -> str:
        verdict = "reached" if self.passed else "missed"
        why = {"budget": " (stopped by its time budget)", "exhausted": " (every try missed)"}.get(self.stopped, "")
        return (f"{self.precision}: {verdict} {self.target:.2%} held-out agreement with {self.recipe.describe()}, "
                f"{len(self.fp32_layers)} fp32 layer(s): {self.heldout['agreement']:.2%} after "
                f"{len(self.tried)} tr{'y' if len(self.tried) == 1 else 'ies'} in {self.seconds:.0f}s{why}")


def _stamp(recipe: Recipe, floor: float, target: float, n_cal: int, n_held: int) -> dict:
    """What a searched file's settings record of its search (``zoo.precision_settings``): only what
    made it, nothing measured, so the bytes follow from the inputs."""
    return {"recipe": recipe.to_dict(), "floor": floor, "target": target, "calibration_rows": [0, n_cal],
            "heldout_rows": [n_cal, n_cal + n_held]}


def rebuild(fp32_ref: onnxio.ModelRef, record: dict, train_x: np.ndarray | None, *, input_name: str = "input",
            what: str = "model") -> bytes:
    """The file a search made, again, from its manifest record (recipe and fp32 layers; ``zoo build
    --check``): no search, the same bytes."""
    r = record["recipe"]
    recipe = Recipe(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in r.items()})
    if "per_channel" not in r:
        recipe = replace(recipe, per_channel=None)
    rows = record["heldout"]["rows"]
    cal = None
    if record["precision"] == "int8_static":
        proto = onnxio.load(fp32_ref)
        cal = calibration_inputs(train_x, proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value,
                                 CALIBRATION_SAMPLES, what)
    return make_file(record["precision"], fp32_ref, recipe, record["fp32_layers"], cal_x=cal, input_name=input_name,
                     what=what, search=_stamp(recipe, record["floor"], record["target"], rows[0], rows[1] - rows[0]))


def _slim(r: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k != "range"}


def too_few_rows(train_x, train_y) -> str | None:
    """Why the search cannot run on this training split (too few labelled rows to hold any out), or None."""
    n = 0 if train_x is None else len(train_x)
    if train_y is None or n < CALIBRATION_SAMPLES + MIN_HELDOUT:
        return (f"{n} labelled training rows, fewer than the {CALIBRATION_SAMPLES + MIN_HELDOUT} the search needs "
                f"({CALIBRATION_SAMPLES} calibrate, at least {MIN_HELDOUT} judge)")
    return None


def _step_after(k: int) -> int:
    return k + 1 if k < SINGLE_STEPS else max(k + 1, math.ceil(k * 1.5))


def search(fp32_ref: onnxio.ModelRef, precision: str, train_x: np.ndarray | None, train_y: np.ndarray | None, *,
           min_agreement: float, max_top1_loss: float = MAX_TOP1_LOSS, budget_s: float = DEFAULT_BUDGET_S,
           input_name: str = "input", what: str = "model", threads: int | None = None,
           heldout_samples: int = HELDOUT_SAMPLES, progress=lambda m: None) -> SearchResult:
    """The fastest-recipe file of ``precision`` that keeps ``min_agreement`` (+ :data:`MARGIN`) of the
    fp32 model's classes on the held-out training rows and loses at most ``max_top1_loss`` there;
    if none is found in ``budget_s`` seconds, the best file tried (``passed`` False)."""
    t0 = time.perf_counter()
    if precision not in SEARCHED:
        raise ExportError(f"no quantisation search for {precision!r}; valid: {', '.join(SEARCHED)}")
    proto = onnxio.load(fp32_ref)
    dim = proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    cal = calibration_inputs(train_x, dim, CALIBRATION_SAMPLES, what)
    held_x = np.ascontiguousarray(train_x[len(cal):len(cal) + heldout_samples], dtype=np.float32)
    if train_y is None or len(held_x) < MIN_HELDOUT:
        raise CalibrationError(f"the quantisation search for {what} needs at least {len(cal) + MIN_HELDOUT} labelled "
                               f"training samples ({len(cal)} calibrate, the rest judge); the training split has "
                               f"{len(train_x)}")
    held_y = np.asarray(train_y)[len(cal):len(cal) + len(held_x)]
    target = min(1.0, float(min_agreement) + MARGIN)
    tag = f"{what} {precision}"
    ref = predict(fp32_ref, held_x, input_name, threads)
    fp32_top1 = float((ref == held_y).mean())
    progress(f"{tag}: searching for {target:.2%} held-out agreement (floor {min_agreement:.2%} + {MARGIN:.1%}) on "
             f"training rows {len(cal)}-{len(cal) + len(held_x) - 1}, budget {budget_s:.0f}s")
    prepared = gemm_to_matmul(proto)
    all_nodes = int8_nodes(prepared)
    ranges: dict[str, dict] = {}
    tmpdir = tempfile.TemporaryDirectory(prefix="zoo-quant-search-")
    tmp = Path(tmpdir.name)

    def ranges_for(recipe: Recipe):
        if precision != "int8_static":
            return None
        if recipe.calibration not in ranges:
            src = tmp / "model.fp32.onnx"
            if not src.exists():
                onnx.save(prepared, str(src))
            ranges[recipe.calibration] = measure_ranges(src, cal, input_name, tmp, ["MatMul"], recipe.calibration)
        return ranges[recipe.calibration]

    def excluded(recipe: Recipe) -> list[str]:
        kinds = {k for g in recipe.exclude for k in GROUPS[g]}
        return [n for n in all_nodes if layer_kind(n) in kinds]

    tried: list[dict] = []
    recipes: list[Recipe] = []
    state = {"best": None, "pass": None, "plain": None, "cost": 0.0}

    def attempt(recipe: Recipe, fp32_layers: list[str]) -> bool:
        t = time.perf_counter()
        layers = sorted(set(excluded(recipe)) | set(fp32_layers))
        stamp = _stamp(recipe, float(min_agreement), target, len(cal), len(held_x))
        data = make_file(precision, fp32_ref, recipe, layers, cal_x=cal, ranges=ranges_for(recipe),
                         input_name=input_name, what=what, search=stamp)
        pred = predict(data, held_x, input_name, threads)
        agreement, top1 = float((pred == ref).mean()), float((pred == held_y).mean())
        ok = agreement >= target and fp32_top1 - top1 <= max_top1_loss
        state["cost"] = time.perf_counter() - t
        tried.append({"step": len(tried) + 1, "recipe": recipe.describe(), "fp32_layers": len(layers),
                      "agreement": round(agreement, 5), "top1": round(top1, 5), "seconds": round(state["cost"], 1),
                      "verdict": "pass" if ok else "under target"})
        progress(f"{tag}: try {len(tried)}: {recipe.describe()}, {len(layers)} fp32 layer(s): held-out agreement "
                 f"{agreement:.2%}, top-1 {top1:.2%} (fp32 {fp32_top1:.2%}) in {state['cost']:.1f}s"
                 f"{': passes' if ok else ''}")
        cand = (agreement, top1, recipe, layers, data)
        if ok and (state["pass"] is None or len(layers) < len(state["pass"][3])):
            state["pass"] = cand
        if state["best"] is None or agreement > state["best"][0]:
            state["best"] = cand
        if not layers and (state["plain"] is None or agreement > state["plain"][0]):
            state["plain"] = (agreement, recipe)
        return ok

    def out_of_time() -> bool:
        return time.perf_counter() - t0 + state["cost"] > budget_s

    stopped = None
    sens: list[dict] = []
    try:
        # dynamic int8's fixed recipe chooses per-channel from the weights: resolved once, so that
        # the ladder's next step is the other choice, not the same file again
        heuristic = per_channel_helps(prepared, all_nodes) if precision == "int8" else True
        step, recipe = 0, ladder(precision, 0, Recipe(), heuristic)
        while recipe is not None:  # the fixed recipe first: a file always comes out
            if recipe not in recipes and attempt(recipe, []):
                break
            recipes.append(recipe)
            step += 1
            recipe = ladder(precision, step, state["best"][2], heuristic)
            if recipe is not None and recipe not in recipes and out_of_time():
                stopped = "budget"
                break
        if state["pass"] is None and stopped is None:
            # the fallback starts from the best recipe that keeps every layer quantised and ranks all
            # layers: whole kinds kept fp32 cost speed where only some of their layers matter
            base = state["plain"][1]
            progress(f"{tag}: no recipe reached {target:.2%}; measuring each layer's sensitivity under "
                     f"{base.describe()} on {SENSITIVITY_SAMPLES} calibration samples ...")
            sens = sensitivity(fp32_ref, precision, base, cal[:SENSITIVITY_SAMPLES], ranges=ranges_for(base),
                               input_name=input_name, threads=threads, deadline=t0 + budget_s)
            key = _rank_key(sens)
            top = ", ".join(f"{r['layer'].rsplit('/', 1)[0]} {r[key]:.3f}" for r in sens[:5])
            progress(f"{tag}: most sensitive ({'relative logit error with that layer alone rounded' if key == 'logit_error' else 'relative error added at its output'}): {top}")
            order = fallback_order(sens)[:-1]  # never every layer: that file is the fp32 model, slower
            fail, k = 0, 1
            while k <= len(order):
                if out_of_time():
                    stopped = "budget"
                    break
                if attempt(base, order[:k]):
                    break
                fail, k = k, min(_step_after(k), len(order)) if k < len(order) else k + 1
            # bisect back to the fewest layers that pass (the single steps already are minimal)
            hi = k if state["pass"] is not None else None
            while hi is not None and hi - fail > 1 and stopped is None:
                if out_of_time():
                    stopped = "budget"
                    break
                mid = (fail + hi) // 2
                if attempt(base, order[:mid]):
                    hi = mid
                else:
                    fail = mid
            if state["pass"] is None and stopped is None:
                stopped = "exhausted"
    finally:
        tmpdir.cleanup()
    agreement, top1, recipe, layers, data = state["pass"] or state["best"]
    result = SearchResult(precision, data, recipe, layers, state["pass"] is not None,
                          {"split": "train", "rows": [len(cal), len(cal) + len(held_x)], "samples": len(held_x),
                           "agreement": round(agreement, 5), "top1": round(top1, 5), "fp32_top1": round(fp32_top1, 5)},
                          tried, stopped, float(min_agreement), target, float(budget_s), time.perf_counter() - t0, sens)
    progress(f"{what} {result.line()}")
    return result
