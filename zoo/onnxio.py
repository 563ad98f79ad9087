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


def _varint(buf, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf, start: int, end: int):
    """``(field number, start, end)`` of every length-delimited field of one message's wire bytes
    (other wire types are skipped); the message is not parsed into objects."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("a field runs past its message")
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("a field runs past its message")


def count_entries(data: bytes, limit: int) -> int:
    """Nodes and tensors of a serialised ModelProto, in every graph, subgraph and function,
    counted on the wire bytes without parsing them (parsing a million tiny initializers costs
    tens of times the file's size); raises ``ValueError`` as soon as the count passes ``limit``
    (a model that is not well-formed protobuf is left for the parser to refuse)."""
    import onnx

    num = lambda msg, field: msg.DESCRIPTOR.fields_by_name[field].number
    m_graph, m_funcs = num(onnx.ModelProto, "graph"), num(onnx.ModelProto, "functions")
    g_node, g_init, g_sparse = (num(onnx.GraphProto, f) for f in ("node", "initializer", "sparse_initializer"))
    f_node, n_attr = num(onnx.FunctionProto, "node"), num(onnx.NodeProto, "attribute")
    a_tensor = {num(onnx.AttributeProto, f) for f in ("t", "tensors", "sparse_tensor", "sparse_tensors")}
    a_graph = {num(onnx.AttributeProto, f) for f in ("g", "graphs")}
    buf = memoryview(data)
    count = 0
    stack: list[tuple[str, int, int]] = [("model", 0, len(buf))]
    try:
        while stack:
            kind, start, end = stack.pop()
            for field, s, e in _fields(buf, start, end):
                if kind == "model":
                    if field == m_graph:
                        stack.append(("graph", s, e))
                    elif field == m_funcs:
                        stack.append(("function", s, e))
                    continue
                if kind == "attribute":
                    if field in a_tensor:
                        count += 1
                    elif field in a_graph:
                        stack.append(("graph", s, e))
                elif kind == "node":
                    if field == n_attr:
                        stack.append(("attribute", s, e))
                    continue
                elif (kind == "graph" and field in (g_node, g_init, g_sparse)) or (kind == "function" and field == f_node):
                    count += 1
                    if field in (g_node, f_node):
                        stack.append(("node", s, e))
                if count > limit:
                    raise OverflowError(count)
    except OverflowError:
        raise ValueError(f"more than {limit:,} nodes and tensors") from None
    except (ValueError, IndexError):
        pass  # malformed: onnx's parser says so
    return count
