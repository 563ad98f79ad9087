"""fp16: every float initializer and every computation in float16, the graph's input and
  output kept float32 with one ``Cast`` at each end, so callers feed and read the same tensors as
  with the fp32 file. Intended for GPU providers; the CPU provider runs it too (slowly).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import onnxio
from ..errors import ExportError

from .variants import copy_model, finish

FP16_MAX = float(np.finfo(np.float16).max)


def _to_fp16(tensor: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(tensor)
    if np.any(np.abs(arr[np.isfinite(arr)]) > FP16_MAX):
        raise ExportError(f"fp16: {tensor.name!r} holds values beyond the float16 range ({FP16_MAX:g})")
    return numpy_helper.from_array(arr.astype(np.float16), name=tensor.name)


def convert_fp16(model_bytes: onnxio.ModelRef) -> bytes:
    """The fp16 variant of an fp32 model: float16 weights and compute, float32 input and output."""
    fp32 = onnxio.load(model_bytes)
    proto = copy_model(fp32)
    graph = proto.graph
    float_t, half_t = TensorProto.FLOAT, TensorProto.FLOAT16
    for func in proto.functions:  # pragma: no cover - the exporter inlines everything
        raise ExportError(f"fp16: model functions ({func.name}) are not supported")

    for i, t in enumerate(graph.initializer):
        if t.data_type == float_t:
            graph.initializer[i].CopyFrom(_to_fp16(t))
    for node in graph.node:
        if node.op_type in ("Loop", "If", "Scan"):
            raise ExportError(f"fp16: control flow ({node.op_type}) is not supported")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == float_t:
                attr.t.CopyFrom(_to_fp16(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == float_t:
                attr.i = half_t
            if node.op_type in ("ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform") and attr.name == "dtype":
                raise ExportError(f"fp16: {node.op_type} is not supported")
    for vi in graph.value_info:
        if vi.type.tensor_type.elem_type == float_t:
            vi.type.tensor_type.elem_type = half_t

    # float32 at the edges: Cast(input) -> <input>_fp16 feeds what the input fed, and the nodes
    # that made an output make <output>_fp16, cast back to float32 under the output's name.
    head, tail = [], []
    renames: dict[str, str] = {}
    for vi in graph.input:
        if vi.type.tensor_type.elem_type == float_t and vi.name not in {t.name for t in graph.initializer}:
            renames[vi.name] = f"{vi.name}_fp16"
            head.append(helper.make_node("Cast", [vi.name], [renames[vi.name]], name=f"{vi.name}_cast_fp16", to=half_t))
    out_renames: dict[str, str] = {}
    for vi in graph.output:
        if vi.type.tensor_type.elem_type == float_t:
            out_renames[vi.name] = f"{vi.name}_fp16"
            tail.append(helper.make_node("Cast", [out_renames[vi.name]], [vi.name], name=f"{vi.name}_cast_fp32", to=float_t))
    for node in graph.node:
        for i, name in enumerate(node.input):
            name = renames.get(name, name)
            node.input[i] = out_renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = out_renames.get(name, name)
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    settings = {"method": "zoo fp16 cast", "weights": "float16", "compute": "float16", "io": "float32"}
    return finish(proto, fp32, "fp16", settings)
