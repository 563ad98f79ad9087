"""External data of an ONNX model: which files a model refers to, each checked to stay in its folder."""

from __future__ import annotations

import io
import posixpath

from ..errors import cut
from ..onnxio import iter_tensors
from .config import IntegrityError, UnsafePathError, first_line
from .onnxwire import external_locations_in
from .paths import safe_relpath


def parse_model(data: bytes, what: str):
    """A ModelProto from bytes, or ``IntegrityError`` (protobuf raises several unrelated types)."""
    import onnx

    if not data:
        raise IntegrityError(f"{what} is empty (0 bytes); not an ONNX model")
    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - DecodeError, RuntimeWarning-as-error, ...
        raise IntegrityError(f"{what} is not a readable ONNX model ({cut(first_line(e), 120)})") from None


def external_locations(proto, what: str) -> list[str]:
    """The external-data locations the model refers to, as checked relative paths (in its folder)."""
    import onnx

    out: dict[str, None] = {}
    for t in iter_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((kv.value for kv in t.external_data if kv.key == "location"), "")
        out[_checked(loc, f"{what}: external data of tensor {cut(repr(t.name), 80)}")] = None
    return list(out)


def _checked(loc: str, label: str) -> str:
    if loc.startswith("./"):
        loc = "/".join(p for p in loc.split("/") if p != ".")
    try:
        return safe_relpath(loc, label)
    except UnsafePathError as e:
        raise UnsafePathError(f"{e} - it must stay inside the model's folder") from None


def external_data_files(model, model_relpath: str, entry: dict) -> list[dict]:
    """The manifest records of the external-data files the model refers to: ``model`` is its bytes
    or an open binary file (read in a stream, in bounded memory, whatever its size).

    Raises ``UnsafePathError`` for a location outside the model's folder and ``IntegrityError`` for
    one the manifest does not list (or a file that is not ONNX at all).
    """
    f = io.BytesIO(model) if isinstance(model, (bytes, bytearray, memoryview)) else model
    locations = {_checked(loc, f"{model_relpath}: external data"): None
                 for loc in external_locations_in(f, model_relpath)}
    listed = {f["path"]: f for f in entry["files"]}
    folder = posixpath.dirname(model_relpath)
    out = []
    for loc in locations:
        rel = posixpath.join(folder, loc) if folder else loc
        if rel not in listed:
            raise IntegrityError(f"{model_relpath}: external data in {rel!r}, which the manifest does not list")
        out.append(listed[rel])
    return out
