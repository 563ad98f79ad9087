"""Issue 34: targets for older and smaller runtimes (zoo build --opsets / --ort): built, verified in
ONNX Runtime against PyTorch, listed in the manifest, and byte-reproducible."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import zoo_cmd

from zoo.builder import manifest as mf
from zoo.builder.artifact import read_tensor, request_for
from zoo.builder.pipeline import build, check_against
from zoo.builder.steps import default_extras
from zoo.errors import InputError
from zoo.exporters.targets import _same_graph, opset_target_bytes, parse_opsets
from zoo.fsutil import sha256_file


@pytest.fixture(scope="module")
def two_builds(targets_build, tmp_path_factory):
    """The session's targets build, and the same build again in another folder (no parity matrix)."""
    b = tmp_path_factory.mktemp("targets-b")
    extras = default_extras(bench=False, verify=False, opsets=(15, 17), ort=True)
    results = build([request_for("dense_b0", input_dim=64)], b, verifier=None, extras=extras)
    assert [r.status for r in results] == ["ok"], results[0].error
    return (targets_build, mf.load(targets_build)), (b, mf.load(b))


def test_targets_are_listed_declared_and_reproducible(two_builds):
    (a, man_a), (b, man_b) = two_builds
    entry = mf.entry(man_a, "dense_b0")
    targets = {f["path"]: f for f in entry["files"] if f["role"] == "target"}
    assert set(targets) == {"dense_b0/model.opset15.onnx", "dense_b0/model.opset17.onnx", "dense_b0/model.ort"}
    config = next(f for f in entry["files"] if f["role"] == "target_config")
    assert config["path"] == "dense_b0/model.required_operators.config" and config["of"] == "dense_b0/model.ort"
    for opset in (15, 17):
        rec = targets[f"dense_b0/model.opset{opset}.onnx"]
        proto = onnx.load(a / rec["path"])
        default = next(o.version for o in proto.opset_import if o.domain == "")
        # The lowest IR version the opset allows (8 for 15..18): what onnxruntime 1.16 (IR <= 9) loads.
        assert (default, proto.ir_version) == (opset, 8) == (rec["opset"], rec["ir_version"])
        assert rec["format"] == "onnx" and rec["precision"] == "fp32"
        assert json.loads({p.key: p.value for p in proto.metadata_props}["zoo.target"])["opset"] == opset
    assert targets["dense_b0/model.ort"]["format"] == "ort"
    # the converter's operator list, without its comment lines (they named temporary paths)
    text = (a / config["path"]).read_text()
    assert "ai.onnx;" in text and "#" not in text and "/tmp" not in text
    # Byte-reproducible: two builds, every file the same sha256 (and as the manifest says), except the
    # ORT format, which onnxruntime's converter does not write reproducibly (marked so, same size)
    for f in entry["files"]:
        assert sha256_file(a / f["path"]) == f["sha256"]
        if f["path"].endswith(".ort"):
            assert f["reproducible"] is False and (a / f["path"]).stat().st_size == (b / f["path"]).stat().st_size
        else:
            assert "reproducible" not in f
            assert sha256_file(b / f["path"]) == f["sha256"], f["path"]


def test_every_target_has_a_passing_parity_record_of_its_own(two_builds):
    (a, man), _ = two_builds
    entry = mf.entry(man, "dense_b0")
    for f in entry["files"]:
        if f["role"] != "target":
            continue
        recs = [r for r in entry["parity"] if r.get("file") == f["path"]]
        assert recs and all(r["verdict"] == "pass" and r["runtime"] == "onnxruntime" for r in recs), f["path"]
        assert max(r["max_abs_error"] for r in recs) <= 1e-4


@pytest.mark.parametrize("name", ["model.opset15.onnx", "model.opset17.onnx", "model.ort"])
def test_each_target_runs_the_test_data_in_onnxruntime(two_builds, name):
    (a, _), _ = two_builds
    sess = ort.InferenceSession(str(a / "dense_b0" / name), providers=["CPUExecutionProvider"])
    x = read_tensor((a / "dense_b0/test_data_set_0/input_0.pb").read_bytes())
    y = read_tensor((a / "dense_b0/test_data_set_0/output_0.pb").read_bytes())
    got = sess.run(None, {"input": x})[0]
    assert np.all(np.abs(got - y) <= 1e-4 + 1e-3 * np.abs(y))


def test_check_rebuilds_the_targets_the_manifest_lists(two_builds):
    (a, man), _ = two_builds
    # a reference whose opset 15 target was changed: that row, and only that one, is a mismatch
    bad = json.loads(json.dumps(man))
    f = next(f for f in bad["models"][0]["files"] if f["path"] == "dense_b0/model.opset15.onnx")
    f["sha256"] = "0" * 64
    rows = check_against([request_for("dense_b0", input_dim=64)], bad)
    paths = {r["path"] for r in rows}
    assert {"dense_b0/model.opset17.onnx", "dense_b0/model.ort", "dense_b0/model.required_operators.config"} <= paths
    assert [r["path"] for r in rows if not r["match"]] == ["dense_b0/model.opset15.onnx"]
    assert next(r for r in rows if r["path"] == "dense_b0/model.ort")["note"].startswith("not compared")


@pytest.fixture(scope="module")
def model_bytes(targets_build):
    return (targets_build / "dense_b0" / "model.onnx").read_bytes()


def test_opsets_are_parsed_and_unreachable_ones_refused(model_bytes):
    assert parse_opsets("17, 15,15") == (15, 17)
    assert parse_opsets(None) == ()
    with pytest.raises(InputError, match="below 14"):
        parse_opsets("13")
    with pytest.raises(InputError, match="opset numbers"):
        parse_opsets("15,x")
    with pytest.raises(InputError, match="above"):
        opset_target_bytes(model_bytes, 19)


def test_a_conversion_that_changes_the_graph_is_not_exact(model_bytes):
    proto = onnx.load_from_string(model_bytes)
    assert _same_graph(proto.graph, proto.graph) is None
    changed = onnx.ModelProto()
    changed.CopyFrom(proto)
    changed.graph.node[3].op_type = "Relu"
    assert "changed" in _same_graph(proto.graph, changed.graph)
    init = changed.graph.initializer[0]
    changed.CopyFrom(proto)
    arr = onnx.numpy_helper.to_array(changed.graph.initializer[0]).copy()
    arr.flat[0] += 1
    changed.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    assert "initializer" in _same_graph(proto.graph, changed.graph)


def test_cli_refuses_bad_opsets_before_any_work(tmp_path):
    res = subprocess.run(zoo_cmd("build", "dense_b0", "--opsets", "12", "--artifacts", str(tmp_path)),
                         capture_output=True, text=True)
    assert res.returncode == 2 and "below 14" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "manifest.json").exists()


def test_zoo_verify_checks_the_onnx_targets_and_records_them_by_file(two_builds):
    from zoo.builder.verification import verify_models

    (a, man), _ = two_builds
    said = []
    recs = verify_models(a, ["dense_b0"], providers=["CPUExecutionProvider"], runtimes=[], batch_sizes=(1, 3), record=False,
                         progress=said.append)["dense_b0"]
    by_file = {}
    for r in recs:
        by_file.setdefault(r.get("file"), []).append(r)
    assert set(by_file) == {None, "dense_b0/model.opset15.onnx", "dense_b0/model.opset17.onnx"}
    assert all(r["verdict"] == "pass" for r in recs)
    assert any("model.ort: the ORT format" in m for m in said)  # not ONNX: said, not silently skipped
