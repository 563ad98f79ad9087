"""``zoo info``: what an .onnx file holds, read without running it (and without trusting it).

The file must be a non-empty regular file (a FIFO or device is refused before it is opened for
reading, so it cannot block); it is parsed from bytes, passed through ``onnx.checker`` and typed
guards before any field is read; external data is reported and must stay in the model's folder.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import ZooError, cut
from .config import UnsafePathError, first_line
from .external import external_locations, parse_model

MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit for one message


def read_regular(path: Path, what: str = "model") -> bytes:
    """The bytes of the regular, non-empty file ``path``; every failure a one-line ``ZooError``."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ZooError(f"{path} is not a regular file; refusing to read it as a {what}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())  # the file opened, not the one looked at a moment ago
            if not stat.S_ISREG(st.st_mode):
                raise ZooError(f"{path} is not a regular file; refusing to read it as a {what}")
            if st.st_size > MAX_MODEL_BYTES:
                raise ZooError(f"{path} is larger than {MAX_MODEL_BYTES:,} bytes; not a single-file ONNX model")
            data = f.read(MAX_MODEL_BYTES + 1)
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e.strerror or first_line(e)}") from None
    if not data:
        raise ZooError(f"{path} is empty (0 bytes); not an ONNX model")
    return data


def describe(path: str | Path) -> dict:
    import onnx

    path = Path(path)
    data = read_regular(path)
    proto = parse_model(data, str(path))
    external = _external(proto, path)  # before the checker, which would open what they point to
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - ValidationError and C++ errors surface as several types
        raise ZooError(f"{path} is not a valid ONNX model ({cut(first_line(e), 160)})") from None
    if not proto.graph.node and not proto.graph.input:
        raise ZooError(f"{path} is not a readable ONNX model (empty graph)")
    try:
        from ..exporters.ports import io_ports

        ports = io_ports(proto)
        params = int(sum(_numel(t.dims) for t in proto.graph.initializer))
    except (KeyError, ValueError, TypeError, OverflowError) as e:
        raise ZooError(f"{path}: unsupported input, output or initializer type ({cut(first_line(e), 120)})") from None
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "path": str(path),
        "file_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "ir_version": proto.ir_version,
        "opset": opset,
        "producer": cut(f"{proto.producer_name} {proto.producer_version}".strip(), 200),
        "domain": cut(proto.domain, 200),
        "model_version": int(proto.model_version),
        "doc_string": cut(proto.doc_string, 1000),
        "params": params,
        "nodes": len(proto.graph.node),
        "ops": sorted({n.op_type for n in proto.graph.node}),
        "inputs": ports["inputs"],
        "outputs": ports["outputs"],
        "metadata": {cut(p.key, 200): cut(p.value, 1000) for p in proto.metadata_props},
        "external_data": external,
    }


def _numel(dims) -> int:
    n = 1
    for d in dims:
        if d < 0:
            raise ValueError(f"negative dimension {d}")
        n *= d
    return n


def _external(proto, path: Path) -> list[dict]:
    """Every external-data file: its location (inside the model's folder), bytes, whether present."""
    try:
        locations = external_locations(proto, str(path))
    except UnsafePathError as e:
        raise UnsafePathError(f"{e}; not opening it") from None
    out = []
    for loc in locations:
        target = path.parent / loc
        try:
            st = os.lstat(target)
            present, size = stat.S_ISREG(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else None
        except OSError:
            present, size = False, None
        out.append({"location": loc, "present": present, "bytes": size})
    return out
