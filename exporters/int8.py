"""int8: ONNX Runtime's dynamic quantisation of the weights (``onnxruntime.quantization``):
  weights are stored as int8 (symmetric, per output channel where that lowers the error, see
  :func:`per_channel_helps`), activations are quantised to uint8 at run time. ONNX Runtime's
  dynamic quantiser handles ``MatMul`` but not ``Gemm``, so every ``Gemm(x, W, b, transB=1)`` is
  first rewritten as ``MatMul(x, W^T) + b`` (exact in fp32). The file holds standard ONNX ops only
  (``DynamicQuantizeLinear``, ``MatMulInteger``, ``Cast``, ``Mul``, ``Add``); ONNX Runtime fuses
  them into its ``DynamicQuantizeMatMul`` kernel when it loads the model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import onnxio
from ..errors import ExportError

from .onnx_export import quiet
from .variants import copy_model, finish

# A weight matrix smaller than this stays fp32 in the int8 file: quantising its input costs more
# than its int8 weights save, and the squeeze-excitation layers it catches are the most sensitive.
INT8_MIN_WEIGHT_ELEMENTS = 4096
# Per-channel scales are used when they cut the weights' relative quantisation error by more than
# this factor. Even i.i.d. weights gain ~1.35x (column maxima differ by chance); BatchNorm-folded
# weights, whose output channels sit at different scales, gain ~1.75x (B0-B7), and there
# per-channel also lifts the output's cosine similarity (B2: 0.990 against 0.978 per-tensor).
PER_CHANNEL_GAIN = 1.5



def gemm_to_matmul(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which ``Gemm(x, W, b)`` with constant ``W`` is ``MatMul(x, W') + b``.

    ``W'`` is ``W`` transposed when ``transB=1`` (stored once, as ``<W>_T``); ``alpha``/``beta``
    other than 1 and ``transA`` are left to the ``Gemm`` (the exporter never writes them).
    """
    proto = copy_model(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    names = {n.name for n in graph.node}
    new_nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w_name = node.input[1] if node.op_type == "Gemm" and len(node.input) >= 2 else None
        if (
            w_name is None
            or w_name not in inits
            or uses.get(w_name) != 1
            or w_name in outputs
            or attrs.get("transA", 0) != 0
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
            or len(inits[w_name].dims) != 2
        ):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[w_name])
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
            new_w = numpy_helper.from_array(w, name=f"{w_name}_T")
            graph.initializer.remove(inits[w_name])
            graph.initializer.append(new_w)
            w_name = new_w.name
        has_bias = len(node.input) >= 3 and node.input[2]
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        scope = node.name.rsplit("/", 1)[0] if "/" in node.name else node.name  # "blocks.3.expand.0"
        if f"{scope}/MatMul" in names or f"{scope}/Add" in names:
            scope = node.name  # two Gemms in one module: keep them apart
        names.update((f"{scope}/MatMul", f"{scope}/Add"))
        new_nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=f"{scope}/MatMul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{scope}/Add"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return proto


def scope_quantizer_nodes(graph: onnx.GraphProto) -> None:
    """The quantiser names the nodes it adds after tensors (``mul_93_QuantizeLinear``); give each
    unscoped node the module path of the node it feeds (or is fed by): ``blocks.3.project.0/
    DynamicQuantizeLinear``, so the int8 file reads like the fp32 one. Names stay unique."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    seen = {n.name for n in graph.node if "/" in n.name}
    for node in graph.node:
        if "/" in node.name:
            continue
        near = [c for o in node.output for c in consumers.get(o, [])] + [producer[i] for i in node.input if i in producer]
        scope = next((m.name.rsplit("/", 1)[0] for m in near if "/" in m.name), None)
        if scope is None:
            continue
        base, k = f"{scope}/{node.op_type}", 0
        name = base
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        node.name = name


def _quant_rel_error(w: np.ndarray, per_channel: bool) -> float:
    """Relative L2 error of symmetric int8 rounding of ``w`` ([K, N], channels along N)."""
    amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.round(w / scale), -127, 127) * scale
    norm = np.linalg.norm(w)
    return float(np.linalg.norm(q - w) / norm) if norm > 0 else 0.0


def per_channel_helps(proto: onnx.ModelProto, nodes: list[str], gain: float = PER_CHANNEL_GAIN) -> bool:
    """Whether per-channel scales cut the mean relative weight error of ``nodes``' weights by ``gain``x.

    ONNX Runtime's dynamic quantiser takes per-channel for a whole model, not per node, so the
    choice is made once from the weights (BatchNorm folding leaves output channels at very
    different scales, which is where per-channel pays).
    """
    inits = {t.name: t for t in proto.graph.initializer}
    per_tensor, per_col = [], []
    for node in proto.graph.node:
        if node.name in nodes:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
            per_tensor.append(_quant_rel_error(w, False))
            per_col.append(_quant_rel_error(w, True))
    if not per_tensor:
        return False
    return float(np.mean(per_tensor)) > gain * float(np.mean(per_col))


def int8_nodes(proto: onnx.ModelProto, min_elements: int = INT8_MIN_WEIGHT_ELEMENTS) -> list[str]:
    """Names of the ``MatMul`` nodes worth quantising: constant weight of ``min_elements`` or more."""
    inits = {t.name: t for t in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and int(np.prod(inits[n.input[1]].dims)) >= min_elements
    ]


def quantize_int8(model_bytes: onnxio.ModelRef, per_channel: bool | None = None,
                  min_elements: int = INT8_MIN_WEIGHT_ELEMENTS, *, exclude=(), search: dict | None = None) -> bytes:
    """The int8 variant of an fp32 model (bytes in, bytes out).

    ``per_channel=None`` decides from the weights (:func:`per_channel_helps`). ``exclude``: MatMul
    node names kept fp32, and ``search``: the record written into the settings, both from
    :mod:`.quant_search`; the defaults are the fixed recipe.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = onnxio.load(model_bytes)
    prepared = gemm_to_matmul(fp32)
    skip = set(exclude)
    nodes = [n for n in int8_nodes(prepared, min_elements) if n not in skip]
    if not nodes:
        raise ExportError("int8: the model has no MatMul/Gemm with a constant weight to quantise")
    if per_channel is None:
        per_channel = per_channel_helps(prepared, nodes)
    with tempfile.TemporaryDirectory(prefix="zoo-quantize-") as tmp, quiet(""):
        out = Path(tmp) / "model.int8.onnx"
        try:
            quantize_dynamic(
                prepared,
                out,
                nodes_to_quantize=nodes,
                op_types_to_quantize=["MatMul"],
                per_channel=per_channel,
                reduce_range=False,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True},
                use_external_data_format=onnxio.needs_external(prepared),
            )
        except Exception as e:  # the quantiser raises many types; the zoo reports one
            raise ExportError(f"int8 quantisation failed: {type(e).__name__}: {str(e)[:300]}") from e
        proto = onnx.load(str(out), load_external_data=True)
    scope_quantizer_nodes(proto.graph)
    settings = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "int8", "activation_type": "uint8",
                "per_channel": bool(per_channel), "symmetric_weights": True, "quantized_nodes": len(nodes),
                "min_weight_elements": int(min_elements), **({"search": search} if search is not None else {})}
    return finish(proto, fp32, "int8", settings, fp32_layers=sorted(skip) if search is not None else None)
