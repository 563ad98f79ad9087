"""``zoo info``: what an .onnx file holds, read without running it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ..exporters.ports import io_ports

from ..errors import ZooError
from ..fsutil import sha256_file


def describe(path: str | Path) -> dict:
    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for a file that is not ONNX
        raise ZooError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    if not proto.graph.node and not proto.graph.input:
        raise ZooError(f"{path} is not a readable ONNX model (empty graph)")
    ports = io_ports(proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "ir_version": proto.ir_version,
        "opset": opset,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "params": int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer)),
        "nodes": len(proto.graph.node),
        "ops": sorted({n.op_type for n in proto.graph.node}),
        "inputs": ports["inputs"],
        "outputs": ports["outputs"],
        "metadata": {p.key: p.value for p in proto.metadata_props},
        "external_data": any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer),
    }
