"""Per-layer sensitivity for the quantisation search (:mod:`zoo.exporters.quant_search`): the error
each quantised layer adds at the model's output, fed fp32 inputs (the layer alone fake-quantised, in
PyTorch on one thread), and the fallback order it gives (most logit error per weight first)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import onnxio
from .int8 import gemm_to_matmul, int8_nodes, per_channel_helps

if TYPE_CHECKING:
    from .quant_search import Recipe


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
