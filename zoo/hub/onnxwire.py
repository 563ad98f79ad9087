"""The external-data locations of an ONNX model, read from its protobuf wire format in a stream.

A pulled model may be as large as its manifest says (the schema allows 1 TiB); parsing it with
protobuf holds the file and the parsed message in memory together. The download client only needs
the model's structure and the ``location`` of every tensor stored externally, so it walks the
messages that can hold tensors (``ModelProto`` > graphs > nodes > attributes > tensors, sparse
tensors, functions, training graphs) and seeks past everything else, in bounded memory. It follows
protobuf's rules: a singular message field given twice is merged (a tensor's ``data_location`` from
one copy and its ``external_data`` from another), a known field with another wire type is an
unknown field, and an enum value outside ``DataLocation`` leaves the field as it was.
"""

from __future__ import annotations

import os

from .config import IntegrityError

MAX_DEPTH = 100  # protobuf's own recursion limit
MAX_STRING = 64 * 1024  # a longer external-data key or value is kept as "too long", not read
TOO_LONG = "\0too long"
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# message kind -> {field number: (child kind, repeated)}; "tensor" and "entry" are read, not walked
_SCHEMA = {
    "model": {7: ("graph", False), 25: ("function", True), 20: ("training", True)},
    "training": {1: ("graph", False), 2: ("graph", False)},
    "graph": {1: ("node", True), 5: ("tensor", True), 15: ("sparse", True)},
    "function": {7: ("node", True)},
    "node": {5: ("attribute", True)},
    "attribute": {5: ("tensor", False), 6: ("graph", False), 10: ("tensor", True), 11: ("graph", True),
                  22: ("sparse", False), 23: ("sparse", True)},
    "sparse": {1: ("tensor", False), 2: ("tensor", False)},
}


class _Tensor:
    """What matters of one TensorProto, merged over every copy of a singular field."""

    def __init__(self):
        self.external = False
        self.entries: list[tuple[str | None, str | None]] = []

    def location(self) -> str | None:
        if not self.external:
            return None
        return next((v or "" for k, v in self.entries if k == "location"), "")


class _Reader:
    def __init__(self, f, size: int, what: str):
        self.f, self.size, self.what, self.pos = f, size, what, 0

    def bad(self, why: str) -> IntegrityError:
        return IntegrityError(f"{self.what} is not a readable ONNX model ({why} at byte {self.pos:,})")

    def byte(self, end: int) -> int:
        if self.pos >= end:
            raise self.bad("a field runs past the end of its message")
        b = self.f.read(1)
        if not b:
            raise self.bad("the file ends inside a field")
        self.pos += 1
        return b[0]

    def varint(self, end: int) -> int:
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte(end)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
        raise self.bad("a varint longer than 10 bytes")

    def skip(self, n: int, end: int) -> None:
        if self.pos + n > end:
            raise self.bad("a field runs past the end of its message")
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def string(self, n: int, end: int) -> str:
        if n > MAX_STRING:
            self.skip(n, end)
            return TOO_LONG
        if self.pos + n > end:
            raise self.bad("a field runs past the end of its message")
        raw = self.f.read(n)
        if len(raw) != n:
            raise self.bad("the file ends inside a field")
        self.pos += n
        return raw.decode("utf-8", "replace")

    def fields(self, end: int):
        """(field number, wire type, length of a length-delimited field) of every field up to ``end``;
        the caller reads or skips each length-delimited field, the rest are skipped here."""
        while self.pos < end:
            tag = self.varint(end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise self.bad("field number 0")
            if wire == _LEN:
                n = self.varint(end)
                if self.pos + n > end:
                    raise self.bad("a field runs past the end of its message")
                yield number, wire, n
            elif wire == _VARINT:
                yield number, wire, self.varint(end)
            elif wire in (_I64, _I32):
                self.skip(8 if wire == _I64 else 4, end)
            else:
                raise self.bad(f"wire type {wire}")


def _tensor(r: _Reader, end: int, t: _Tensor) -> None:
    for number, wire, n in r.fields(end):
        if number == 14 and wire == _VARINT:  # data_location: 0 DEFAULT, 1 EXTERNAL; others are unknown
            if n in (0, 1):
                t.external = n == 1
        elif number == 13 and wire == _LEN:  # external_data: StringStringEntryProto
            key = value = None
            stop = r.pos + n
            for k, kw, kn in r.fields(stop):
                if k in (1, 2) and kw == _LEN:
                    s = r.string(kn, stop)
                    key, value = (s, value) if k == 1 else (key, s)
                elif kw == _LEN:
                    r.skip(kn, stop)
            t.entries.append((key, value))
        elif wire == _LEN:
            r.skip(n, end)


def _walk(r: _Reader, kind: str, end: int, out: list[_Tensor], depth: int) -> set[int]:
    """Walk one message of ``kind`` up to ``end``; tensors go to ``out``. Returns the numbers of
    the schema's fields it holds (a model must have a graph)."""
    if depth > MAX_DEPTH:
        raise r.bad(f"messages nested deeper than {MAX_DEPTH}")
    schema, singular, seen = _SCHEMA[kind], {}, set()
    for number, wire, n in r.fields(end):
        child = schema.get(number)
        if wire != _LEN:
            continue
        if child is None:
            r.skip(n, end)
            continue
        seen.add(number)
        ckind, repeated = child
        stop = r.pos + n
        if ckind == "tensor":
            t = singular.get(number) if not repeated else None
            if t is None:
                t = _Tensor()
                out.append(t)
                if not repeated:
                    singular[number] = t
            _tensor(r, stop, t)
        elif ckind == "sparse" and not repeated:
            # a singular sparse tensor merges too: its values and indices are then singular tensors
            # of one merged message, which the per-field table of this walk keeps
            _sparse(r, stop, singular.setdefault(number, {}), out, depth + 1)
        elif ckind == "sparse":
            _sparse(r, stop, {}, out, depth + 1)
        else:
            _walk(r, ckind, stop, out, depth + 1)  # merged graphs: the union of their repeated fields
    return seen


def _sparse(r: _Reader, end: int, tensors: dict, out: list[_Tensor], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise r.bad(f"messages nested deeper than {MAX_DEPTH}")
    for number, wire, n in r.fields(end):
        if number in (1, 2) and wire == _LEN:
            t = tensors.get(number)
            if t is None:
                t = tensors[number] = _Tensor()
                out.append(t)
            _tensor(r, r.pos + n, t)
        elif wire == _LEN:
            r.skip(n, end)


def external_locations_in(f, what: str) -> list[str]:
    """Every ``location`` of a tensor stored externally in the ONNX model ``f`` (an open binary
    file, read from its current position to its end); ``IntegrityError`` if it is not ONNX."""
    start = f.tell()
    size = f.seek(0, os.SEEK_END) - start
    f.seek(start)
    if size <= 0:
        raise IntegrityError(f"{what} is empty (0 bytes); not an ONNX model")
    r = _Reader(f, size, what)
    tensors: list[_Tensor] = []
    if 7 not in _walk(r, "model", size, tensors, 0):
        raise IntegrityError(f"{what} is not a readable ONNX model (no graph)")
    return [loc for t in tensors if (loc := t.location()) is not None]


# --------------------------------------------------------------------------------------------------
# A model without its initializers' data (for ``zoo info``)

_TENSOR_DATA = frozenset({4, 5, 6, 7, 9, 10, 11})  # TensorProto: float/int32/string/int64/raw/double/uint64 data


def _key(number: int, wire: int) -> bytes:
    return _varint_bytes(number << 3 | wire)


def _varint_bytes(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _buf_varint(buf, i: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if i >= end:
            raise ValueError(f"a field runs past the end of its message at byte {i:,}")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
    raise ValueError(f"a varint longer than 10 bytes at byte {i:,}")


def _scan(buf, start: int, end: int):
    """``(number, wire type, field start, value start, field end)`` of every field of one message."""
    i = start
    while i < end:
        first = i
        tag, i = _buf_varint(buf, i, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError(f"field number 0 at byte {first:,}")
        value = i
        if wire == _VARINT:
            _, i = _buf_varint(buf, i, end)
        elif wire in (_I64, _I32):
            i += 8 if wire == _I64 else 4
        elif wire == _LEN:
            n, i = _buf_varint(buf, i, end)
            value, i = i, i + n
        else:
            raise ValueError(f"wire type {wire} at byte {first:,}")
        if i > end:
            raise ValueError(f"a field runs past the end of its message at byte {first:,}")
        yield number, wire, first, value, i


def _rewrite(buf, start: int, end: int, inner: dict, drop=frozenset()) -> bytes:
    """One message's bytes with the fields in ``drop`` left out and the length-delimited fields in
    ``inner`` (number -> rewrite of that sub-message) rewritten; everything else copied as it is."""
    out = bytearray()
    for number, wire, first, value, stop in _scan(buf, start, end):
        if number in drop:
            continue
        if wire == _LEN and number in inner:
            sub = inner[number](buf, value, stop)
            out += _key(number, _LEN) + _varint_bytes(len(sub)) + sub
        else:
            out += buf[first:stop]
    return bytes(out)


def _tensor_without_data(buf, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {}, _TENSOR_DATA)


def _graph_without_data(buf, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {5: _tensor_without_data})  # GraphProto.initializer


def without_initializer_data(buf) -> bytes:
    """The ModelProto in ``buf`` (bytes, or a memoryview of an mmap) with the data of its main
    graph's initializers left out: names, types and dims kept, so the model's structure, ports,
    metadata and parameter count read from it at a fraction of the file's size (a model is mostly
    its weights); the pages of the weights are never touched. ``ValueError`` if it is not protobuf."""
    return _rewrite(buf, 0, len(buf), {7: _graph_without_data})  # ModelProto.graph


__all__ = ["external_locations_in", "without_initializer_data"]
