"""A model's inputs and outputs as the manifest records them (onnx only, no torch)."""

from __future__ import annotations

import onnx


def _type_str(tt) -> str:
    return f"tensor({onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name.replace('float32', 'float').replace('float16', 'float16')})"


def io_ports(proto: onnx.ModelProto) -> dict:
    """Inputs and outputs with symbolic dims as strings, in the ONNX Hub manifest's shape."""

    def port(vi):
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        return {"name": vi.name, "shape": shape, "type": _type_str(tt)}

    inits = {i.name for i in proto.graph.initializer}
    return {
        "inputs": [port(v) for v in proto.graph.input if v.name not in inits],
        "outputs": [port(v) for v in proto.graph.output],
    }
