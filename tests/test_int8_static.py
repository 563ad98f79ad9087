"""Static int8 (QDQ): calibrated on the training split only, one-line failure without one,
reproducible bytes, ONNX Runtime's fused integer kernel in the file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from zoo.exporters.int8_static import (
    calibration_inputs,
    quantize_int8_static,
    round_outward,
)

from zoo.cli import cli
from zoo.errors import CalibrationError
from zoo.model import data as ds


@pytest.fixture(scope="module")
def fp32(small_build):
    return (small_build / "dense_b0" / "model.onnx").read_bytes()


@pytest.fixture(scope="module")
def split():
    return ds.generate(ds.DatasetParams(64, samples=600))


def _settings(blob: bytes) -> dict:
    meta = {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}
    assert meta["zoo.precision"] == "int8_static"
    return json.loads(meta["zoo.precision_settings"])


def test_round_outward_widens_to_a_coarse_grid():
    for v in (0.123456, -3.3, 1e-4, 17.3):
        r = round_outward(v)
        assert abs(r) > abs(v) and np.sign(r) == np.sign(v) and abs(r) <= abs(v) * (1 + 2 ** -5)
        assert round_outward(v * (1 + 1e-7)) == r  # CPU-dependent last bits do not move it
    for v in (0.0, 17.0, -0.5):  # grid points stay
        assert round_outward(v) == v


def test_no_training_split_fails_with_one_line():
    for missing in (None, np.zeros((0, 64), np.float32)):
        with pytest.raises(CalibrationError) as e:
            calibration_inputs(missing, 64, what="dense_b0")
        assert "training split" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CalibrationError, match="takes"):
        calibration_inputs(np.zeros((10, 32), np.float32), 64)


def test_calibration_reads_the_training_split_and_is_reproducible(fp32, split):
    a = quantize_int8_static(fp32, split["x"])
    assert quantize_int8_static(fp32, split["x"]) == a  # same split, same bytes
    s = _settings(a)
    assert s["calibration_split"] == "train" and s["calibration_samples"] == min(512, len(split["x"])) and s["per_channel"]
    # the activation scales come from the data given: other training samples, other file
    assert quantize_int8_static(fp32, split["x"][:50]) != a
    ops = [n.op_type for n in onnx.load_from_string(a).graph.node]
    assert ops.count("MatMulIntegerToFloat") == s["quantized_nodes"] > 0  # fused: no float MatMul on int8 weights
    assert "DequantizeLinear" not in ops  # residual/SE consumers read fp32, not a Q -> DQ round trip
    # it runs and stays close to fp32 on test samples it never saw
    x = split["x_test"][:64]
    ref = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = ort.InferenceSession(a, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


def test_recommend_without_data_exits_2_with_one_line(small_build):
    r = CliRunner().invoke(cli, ["bench", "dense_b0", "--recommend", "--artifacts", str(small_build)])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "training split" in errors[0] and "--data" in errors[0]
    assert "Traceback" not in r.stderr and "peers" not in r.stderr  # failed before measuring anything
