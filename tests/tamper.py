"""A model file with one byte changed that is still a valid, runnable model (as an attacker would
serve it), for the examples' pinned-sha256 tests (test_browser, test_node, test_c)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx import numpy_helper

from zoo.builder import manifest as mf


def change_one_weight_byte(model: Path) -> None:
    """Flip the lowest mantissa bit of one float of the largest initializer, in place: one byte of
    the file differs, the protobuf still parses, and the model's outputs barely move (so nothing
    but the sha256 can tell the files apart)."""
    data = bytearray(model.read_bytes())
    proto = onnx.load_from_string(bytes(data))
    weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    raw = weight.raw_data
    assert len(raw) >= 64 and numpy_helper.to_array(weight).dtype.itemsize == 4
    at = bytes(data).find(raw)
    assert at >= 0 and bytes(data).find(raw, at + 1) < 0, "the weight's bytes must be found exactly once"
    data[at] ^= 0x01  # little-endian float32: byte 0 holds the lowest mantissa bits
    model.write_bytes(bytes(data))
    onnx.checker.check_model(onnx.load(str(model)))


def recompute_manifest(folder: Path) -> None:
    """Make the manifest agree with the files on disk again, as a compromised mirror would."""
    manifest = mf.load(folder)
    for entry in manifest["models"]:
        for f in entry["files"]:
            blob = (folder / f["path"]).read_bytes()
            f["sha256"], f["bytes"] = hashlib.sha256(blob).hexdigest(), len(blob)
    mf.save(folder / mf.MANIFEST_NAME, manifest)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
