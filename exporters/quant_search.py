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

from .. import onnxio
from ..errors import CalibrationError, ExportError
from ..spec import QUANT_BUDGET_S
from .int8 import gemm_to_matmul, int8_nodes, per_channel_helps
from .int8_static import CALIBRATION_SAMPLES, calibration_inputs, measure_ranges
from .quant_sensitivity import _rank_key, by_kind, fallback_order, layer_kind, sensitivity  # noqa: F401 - layer_kind re-exported

SEARCHED = ("int8", "int8_static", "int4")
HELDOUT_SAMPLES = 6000
MIN_HELDOUT = 200
# Held-out agreement the search aims at above the gate's floor. Sampling alone (6,000 held-out and
# 8,000 test samples at 97 %) puts one standard deviation at 0.29 point, and the held-out rows were
# trained on: their answers sit further from a boundary, so a rounding flips fewer of them. Measured
# (B0 and B4, seven searched files): the test split's agreement was 0.07-0.70 point under the held-out's.
MARGIN = 0.01
MAX_TOP1_LOSS = 0.01  # the accuracy gate's rule for a lower precision (zoo.verify.accuracy)
DEFAULT_BUDGET_S = QUANT_BUDGET_S
SENSITIVITY_SAMPLES = 64
SINGLE_STEPS = 4  # fall back this many layers one at a time, then in steps growing 1.5x, then bisect
PREDICT_CHUNK = 256

# Layer kinds, from the exporter's node names (module paths): what the recipes exclude by group.
GROUPS = {"se": ("se_reduce", "se_expand"), "ends": ("stem", "head", "classifier")}


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
