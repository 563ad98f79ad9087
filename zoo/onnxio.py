"""ONNX model files with external data: the zoo's deterministic layout, and loading either form.

A model is one ``.onnx`` file, or (asked for, or when it would not fit one protobuf message of
2 GiB) a small ``.onnx`` whose large tensors live in ``<file>.data`` beside it. The layout is a pure
function of the model: tensors in graph order, each at an offset aligned to 4 KiB (so runtimes can
map them), small tensors left inline, so a rebuild gives the same bytes for both files.

Code that runs a model takes a ``ModelRef``: the bytes of a self-contained model, or the path of a
model file whose external data (if any) lies beside it. Only onnx is needed here (no torch): the
download client uses this module too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Union

INLINE_LIMIT = 2**31  # protobuf refuses to serialise a message of 2 GiB or more
EXTERNAL_MIN_BYTES = 1024  # smaller tensors (biases, shapes, scales) stay in the .onnx
ALIGN = 4096
DATA_SUFFIX = ".data"

ModelRef = Union[bytes, "os.PathLike[str]"]


def data_file(model_path: str) -> str:
    """The external-data file of ``model_path``: ``dense_b0/model.onnx`` -> ``dense_b0/model.onnx.data``."""
    return model_path + DATA_SUFFIX


def iter_tensors(proto):
    """Every tensor of the model: initializers, sparse ones, node attributes, subgraphs, functions."""
    def graph(g):
        yield from g.initializer
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        for n in g.node:
            yield from node(n)

    def node(n):
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices
            if a.HasField("g"):
                yield from graph(a.g)
            for g in a.graphs:
                yield from graph(g)

    yield from graph(proto.graph)
    for f in proto.functions:
        for n in f.node:
            yield from node(n)


def locations(proto) -> list[str]:
    """The external-data locations the model's tensors name, in order, each once."""
    import onnx

    out: dict[str, None] = {}
    for t in iter_tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out[next((kv.value for kv in t.external_data if kv.key == "location"), "")] = None
    return list(out)


def needs_external(proto) -> bool:
    """Whether the model cannot be one file: its serialised size reaches protobuf's 2 GiB limit."""
    return proto.ByteSize() >= INLINE_LIMIT


def split_external(proto, location: str) -> tuple[bytes, bytes]:
    """``(model bytes, data bytes)``: a copy of ``proto`` whose tensors of ``EXTERNAL_MIN_BYTES`` or
    more refer to ``location`` (a file name beside the model), and that file's contents."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    blob = bytearray()
    for t in iter_tensors(out):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"tensor {t.name!r} already refers to external data")
        if not t.HasField("raw_data"):  # typed fields (float_data, ...): raw little-endian bytes first
            if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
                continue
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
        raw = t.raw_data
        if len(raw) < EXTERNAL_MIN_BYTES:
            continue
        blob += bytes(-len(blob) % ALIGN)
        offset = len(blob)
        blob += raw
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            t.external_data.add(key=key, value=value)
    return out.SerializeToString(deterministic=True), bytes(blob)


def model_files(proto, path: str, external: bool | None = None) -> dict[str, bytes]:
    """The file(s) of a model at relative ``path``: ``{path: bytes}``, or with external data (asked
    for, or ``external=None`` and the model needs it) ``{path: bytes, path + ".data": bytes}``."""
    if external is None:
        external = needs_external(proto)
    if not external:
        return {path: proto.SerializeToString(deterministic=True)}
    model, data = split_external(proto, Path(path).name + DATA_SUFFIX)
    return {path: model, data_file(path): data}


def load(ref: ModelRef, external: bool = True):
    """The ``ModelProto`` of ``ref`` (bytes, or a path whose external data is read from beside it)."""
    import onnx

    if isinstance(ref, (bytes, bytearray, memoryview)):
        return onnx.load_from_string(bytes(ref))
    return onnx.load(os.fspath(ref), load_external_data=external)


def ort_source(ref: ModelRef):
    """What ``onnxruntime.InferenceSession`` takes: the bytes, or the path as a string (so that it
    finds the external data beside the model)."""
    return bytes(ref) if isinstance(ref, (bytes, bytearray, memoryview)) else os.fspath(ref)


@contextlib.contextmanager
def as_path(ref: ModelRef, prefix: str = "zoo-model-"):
    """A path to the model: ``ref`` itself, or its bytes in a private temporary folder (removed
    afterwards, also on error) for runtimes that read models from files."""
    if not isinstance(ref, (bytes, bytearray, memoryview)):
        yield Path(ref)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        path = Path(d) / "model.onnx"
        path.write_bytes(ref)
        yield path


@contextlib.contextmanager
def on_disk(files: dict[str, bytes], model_path: str, prefix: str = "zoo-model-"):
    """``files`` (relative path -> bytes: a model and its external data) written into a private
    temporary folder (removed afterwards); yields the path of ``model_path`` there."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        for rel, data in files.items():
            p = Path(d) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        yield Path(d) / model_path


def check(proto) -> None:
    """``onnx.checker`` in full, by path when the model is too large for one message."""
    import onnx

    if not needs_external(proto):
        onnx.checker.check_model(proto, full_check=True)
        return
    # onnx.save(save_as_external_data=True) would move the caller's tensors out: split a copy.
    with on_disk(model_files(proto, "model.onnx", True), "model.onnx", "zoo-check-") as path:
        onnx.checker.check_model(str(path), full_check=True)


def inline(model: bytes, data: bytes) -> bytes:
    """The self-contained bytes of a model split by :func:`split_external` (its ``.onnx`` bytes and
    its ``.data`` bytes): every external tensor's bytes put back (offset and length checked)."""
    import onnx

    proto = onnx.load_from_string(model)
    for t in iter_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        kv = {e.key: e.value for e in t.external_data}
        offset, length = int(kv.get("offset", 0)), int(kv.get("length", len(data)))
        if offset < 0 or length < 0 or offset + length > len(data):
            raise ValueError(f"tensor {t.name!r}: external data [{offset}, {offset + length}) beyond the file")
        t.raw_data = data[offset:offset + length]
        t.ClearField("data_location")  # proto2: a field set to its default is still written
        del t.external_data[:]
    if needs_external(proto):
        raise ValueError("the model is over 2 GiB: it can only be run from its files")
    return proto.SerializeToString(deterministic=True)


@contextlib.contextmanager
def file_ref(files: dict[str, bytes], path: str):
    """The model at ``path`` of ``files`` (relative path -> bytes, its ``.data`` beside it if it has
    one) as a :data:`ModelRef`: its bytes, inline bytes, or over 2 GiB a path in a private folder."""
    data = files.get(data_file(path))
    if data is None:
        yield files[path]
        return
    import onnx

    proto = onnx.load_from_string(files[path])
    if proto.ByteSize() + len(data) < INLINE_LIMIT:
        yield inline(files[path], data)
        return
    with on_disk({path: files[path], data_file(path): data}, path) as p:
        yield p
