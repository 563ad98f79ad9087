"""int4 weight-only (MatMulNBits): every large MatMul quantised in 4-bit blocks, small ones kept fp32,
reproducible bytes, close to fp32 in ONNX Runtime, one-line errors, the process's logging left alone."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from zoo.exporters.int4 import BLOCK_SIZE, quantize_int4
from zoo.exporters.int8 import gemm_to_matmul, int8_nodes

from zoo.errors import ExportError


@pytest.fixture(scope="module")
def fp32(small_build):
    return (small_build / "dense_b0" / "model.onnx").read_bytes()


@pytest.fixture(scope="module")
def int4(fp32):
    return quantize_int4(fp32)


def test_the_large_matmuls_are_4_bit_blocks_and_the_small_ones_stay_fp32(fp32, int4):
    proto = onnx.load_from_string(int4)
    ops = [n.op_type for n in proto.graph.node]
    want = int8_nodes(gemm_to_matmul(onnx.load_from_string(fp32)))
    assert ops.count("MatMulNBits") == len(want) > 0
    assert "MatMul" in ops  # the small squeeze-excitation layers of B0 stay fp32, like in the int8 files
    for n in proto.graph.node:
        if n.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            assert attrs["bits"] == 4 and attrs["block_size"] == BLOCK_SIZE and attrs["accuracy_level"] == 4
            assert n.name.split("/")[0] in {w.split("/")[0] for w in want}  # named after its module
    meta = {p.key: p.value for p in proto.metadata_props}
    settings = json.loads(meta["zoo.precision_settings"])
    assert meta["zoo.precision"] == "int4" and settings["weight_bits"] == 4
    assert settings["quantized_nodes"] == len(want)
    assert len(int4) < len(fp32) / 4  # 4-bit weights and one scale per 32 of them


def test_the_bytes_are_reproducible(fp32, int4):
    assert quantize_int4(fp32) == int4
    assert quantize_int4(fp32, block_size=64) != int4


def test_it_runs_in_onnx_runtime_close_to_fp32(fp32, int4):
    x = np.random.default_rng(0).standard_normal((16, 64), dtype=np.float32)
    ref = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(int4, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.shape == ref.shape and np.isfinite(got).all()
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    # Random weights give small logits, so a few samples move more; a wrong scale or layout would give ~0.
    assert np.median(cos) > 0.99 and cos.mean() > 0.95, cos
    assert not np.array_equal(got, ref)  # it really is another precision


def test_bad_input_is_one_line(fp32):
    with pytest.raises(ExportError, match="no MatMul/Gemm with a constant weight"):
        quantize_int4(fp32, min_elements=10**9)
    with pytest.raises(ExportError, match="power of two"):
        quantize_int4(fp32, block_size=48)


def test_the_quantiser_leaves_the_process_logging_alone(fp32):
    # ONNX Runtime's nbits quantiser calls logging.basicConfig(level=INFO) when imported.
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    quantize_int4(fp32, block_size=16)
    assert (list(root.handlers), root.level) == before
