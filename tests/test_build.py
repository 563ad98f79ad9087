"""zoo build: dynamic batch axis, reproducible bytes, test data, manifest, atomic writes, bad input."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import zoo
import zoo.exporters
from zoo.builder import manifest as mf
from zoo.builder.lock import LOCK_NAME
from zoo.builder.artifact import expected_output, read_tensor, request_for
from zoo.builder.pipeline import build
from zoo.cli import cli
from zoo.errors import ExportError
from zoo.fsutil import leftover_temporaries, sha256_file

from conftest import ROOT, zoo_cmd

runner = CliRunner()


def test_symbolic_batch_axis_and_parity_at_other_batch_sizes(small_build):
    path = small_build / "dense_b0" / "model.onnx"
    proto = onnx.load(str(path))
    for vi in (proto.graph.input[0], proto.graph.output[0]):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert (proto.graph.input[0].name, proto.graph.output[0].name) == ("input", "logits")
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert proto.opset_import[0].version == 18 and proto.ir_version == 10
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # folded
    model = zoo.create("dense_b0", input_dim=64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 64):
        x = torch.randn(batch, 64)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_nothing_machine_specific_in_the_onnx_file(small_build):
    proto = onnx.load(str(small_build / "dense_b0" / "model.onnx"))
    assert not any(n.metadata_props or n.doc_string for n in proto.graph.node)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["zoo.name"] == "dense_b0" and meta["zoo.seed"] == "0" and meta["zoo.input_dim"] == "64"
    assert json.loads(meta["zoo.scaling"])["width"] == 1.0 and meta["zoo.flavor"] == "paper"
    assert "+" not in json.loads(meta["zoo.toolchain"])["torch"]
    raw = (small_build / "dense_b0" / "model.onnx").read_bytes()
    for needle in (b"/tmp", b"/home", b"/work", b".py\"", b"site-packages", str(ROOT).encode()):
        assert needle not in raw


def test_test_data_is_tensorproto_at_batch_3_matching_pytorch(small_build):
    folder = small_build / "dense_b0" / "test_data_set_0"
    x = read_tensor((folder / "input_0.pb").read_bytes())
    y = read_tensor((folder / "output_0.pb").read_bytes())
    assert x.shape == (3, 64) and y.shape == (3, 10) and x.dtype == np.float32
    t = onnx.TensorProto()
    t.ParseFromString((folder / "input_0.pb").read_bytes())
    assert t.name == "input"
    model = zoo.create("dense_b0", input_dim=64)
    # The expected output is the float64 forward pass rounded once (the reproducibility rule): the same
    # bits as expected_output, and within float32 rounding of PyTorch's own float32 pass.
    np.testing.assert_array_equal(expected_output(model, x), y)
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), y, rtol=1e-5, atol=1e-6)


def test_manifest_validates_and_matches_the_files(small_build):
    manifest = mf.load(small_build)  # validates against the shipped schema
    (entry,) = manifest["models"]
    assert entry["model"] == "dense_b0" and entry["model_path"] == "dense_b0/model.onnx"
    assert entry["params"] == zoo.count_params(zoo.create("dense_b0", input_dim=64))
    assert entry["flops"] == zoo.variant_config("dense_b0", input_dim=64).flops()
    assert entry["metadata"]["io_ports"]["inputs"] == [{"name": "input", "shape": ["batch", 64], "type": "tensor(float)"}]
    assert entry["metadata"]["io_ports"]["outputs"][0]["shape"] == ["batch", 10]
    assert {f["role"] for f in entry["files"]} == {"model", "test_input", "test_output"}
    for f in entry["files"]:
        p = small_build / f["path"]
        assert p.stat().st_size == f["bytes"] and sha256_file(p) == f["sha256"]
    assert entry["metadata"]["model_sha"] == sha256_file(small_build / entry["model_path"])
    # The schema really checks: a broken manifest is refused.
    bad = json.loads(json.dumps(manifest))
    bad["models"][0]["files"][0]["sha256"] = "xyz"
    with pytest.raises(zoo.errors.ManifestError, match="sha256"):
        mf.validate(bad)


def _build_in_subprocess(cwd: Path, hashseed: str, *extra: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(ROOT))
    subprocess.run(zoo_cmd("build", "dense_b0", "--input-dim", "32", "--no-verify", "--artifacts", "out", *extra),
                   cwd=cwd, env=env, check=True, capture_output=True)
    out = cwd / "out"
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("manifest.json", LOCK_NAME)}


def test_builds_in_separate_processes_and_folders_are_byte_identical(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    a = _build_in_subprocess(tmp_path / "a", "1")
    b = _build_in_subprocess(tmp_path / "b" / "deeper", "12345")
    assert len(a) == 3 and a == b
    (tmp_path / "c").mkdir()
    c = _build_in_subprocess(tmp_path / "c", "1", "--seed", "7")
    assert all(c[k] != a[k] for k in a)


def test_check_reports_matching_and_mismatching_files(small_build, tmp_path):
    r = runner.invoke(cli, ["build", "dense_b0", "--check", str(small_build / "manifest.json"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["mismatches"] == 0 and len(report["files"]) == 3 and all(f["match"] for f in report["files"])
    tampered = json.loads((small_build / "manifest.json").read_text())
    tampered["models"][0]["files"][0]["sha256"] = "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(tampered))
    r = runner.invoke(cli, ["build", "dense_b0", "--check", str(tmp_path / "m.json")])
    assert r.exit_code == 1
    assert "NO" in r.output and "1 of 3 file(s) differ" in r.output


def test_a_failure_mid_build_leaves_the_previous_manifest_and_no_temporaries(tmp_path, monkeypatch):
    out = tmp_path / "art"
    assert build([request_for("dense_b0", input_dim=32)], out)[0].status == "ok"
    before = (out / "manifest.json").read_bytes()
    model_before = (out / "dense_b0" / "model.onnx").read_bytes()

    import zoo.builder.artifact as artifact

    real = artifact.export_model
    calls = []

    def flaky(model, input_dim, spec, metadata, *rest):
        calls.append(metadata["zoo.name"])
        if len(calls) == 2:
            raise ExportError("injected exporter failure")
        return real(model, input_dim, spec, metadata, *rest)

    monkeypatch.setattr(artifact, "export_model", flaky)
    r = runner.invoke(cli, ["build", "dense_b0", "dense_b1", "--input-dim", "32", "--seed", "5", "--no-verify",
                            "--artifacts", str(out)])
    assert r.exit_code == 1 and "injected exporter failure" in r.output and "nothing was written" in r.output
    assert calls == ["dense_b0", "dense_b1"]
    assert (out / "manifest.json").read_bytes() == before
    assert (out / "dense_b0" / "model.onnx").read_bytes() == model_before  # seed 5's b0 was not committed
    assert leftover_temporaries(out) == [] and not (out / "dense_b1").joinpath("model.onnx").exists()


def test_keep_going_commits_the_models_that_passed(tmp_path, monkeypatch):
    import zoo.builder.artifact as artifact

    real = artifact.export_model

    def fail_b1(model, input_dim, spec, metadata, *rest):
        if metadata["zoo.name"] == "dense_b1":
            raise ExportError("b1 broke")
        return real(model, input_dim, spec, metadata, *rest)

    monkeypatch.setattr(artifact, "export_model", fail_b1)
    out = tmp_path / "art"
    r = runner.invoke(cli, ["build", "dense_b0", "dense_b1", "--input-dim", "32", "--no-verify", "--keep-going",
                            "--artifacts", str(out)])
    assert r.exit_code == 1 and "b1 broke" in r.output
    assert [m["model"] for m in mf.load(out)["models"]] == ["dense_b0"]


def test_a_model_that_fails_late_counts_the_time_of_the_stage_that_failed(tmp_path):
    # An accuracy gate fails inside the extras, after export and parity: the summary's seconds
    # must include that stage (they once showed 15 s for a model that failed after minutes).
    import time

    from zoo.errors import AccuracyError

    def slow_gate(art, entry, staged, progress):
        time.sleep(0.3)
        raise AccuracyError("injected gate failure")

    (r,) = build([request_for("dense_b0", input_dim=32)], tmp_path / "art", extras=[slow_gate])
    assert r.status == "failed" and "injected gate failure" in r.error
    assert r.timings_s["write"] >= 0.3 and {"export", "self_check"} <= set(r.timings_s)


def test_building_a_subset_keeps_the_other_entries(tmp_path):
    out = tmp_path / "art"
    build([request_for("dense_b0", input_dim=32), request_for("dense_b1", input_dim=32)], out)
    first = {m["model"]: m for m in mf.load(out)["models"]}
    build([request_for("dense_b1", input_dim=32, seed=9)], out)
    second = {m["model"]: m for m in mf.load(out)["models"]}
    assert second["dense_b0"] == first["dense_b0"]
    assert second["dense_b1"]["seed"] == 9 and second["dense_b1"]["metadata"]["model_sha"] != first["dense_b1"]["metadata"]["model_sha"]


def test_torchscript_exporter_and_other_opsets(tmp_path):
    results = build([request_for("dense_b0", input_dim=32, spec=zoo.exporters.ExportSpec(exporter="torchscript", opset=17)),
                     request_for("dense_b1", input_dim=32, spec=zoo.exporters.ExportSpec(opset=20))], tmp_path)
    assert [r.status for r in results] == ["ok", "ok"]
    entries = {m["model"]: m for m in mf.load(tmp_path)["models"]}
    assert entries["dense_b0"]["exporter"] == "torchscript" and entries["dense_b0"]["opset_version"] == 17
    proto = onnx.load(str(tmp_path / "dense_b0" / "model.onnx"))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert entries["dense_b1"]["opset_version"] == 20


def test_self_check_failure_keeps_the_model_out(tmp_path, monkeypatch):
    import zoo.builder.artifact as artifact

    real = artifact.export_model

    def perturbed(model, input_dim, spec, metadata, *rest):
        proto = real(model, input_dim, spec, metadata, *rest)
        init = proto.graph.initializer[0]
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[0] += 5.0
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        return proto

    monkeypatch.setattr(artifact, "export_model", perturbed)
    r = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "32", "--no-verify", "--artifacts", str(tmp_path)])
    assert r.exit_code == 1 and "self-check" in r.output and "'logits' differs" in r.output
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(
    "args,words",
    [
        (["--check", "{tmp}/missing.json"], "no manifest at"),
        (["--check", "{tmp}/bad.json"], "not valid JSON"),
        (["--artifacts", "{tmp}/file-not-dir"], "is a file"),
        (["--opset", "99"], "opset 99 is not supported"),
    ],
)
def test_bad_build_input_gets_one_clear_line(tmp_path, args, words):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "file-not-dir").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = runner.invoke(cli, ["build", "dense_b0", "--no-verify", *args])
    assert r.exit_code in (1, 2) and words in r.output, r.output
    assert "Traceback" not in r.output


def test_unwritable_out_is_refused_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions; use a path under a file instead
            target = tmp_path / "afile" / "sub"
            (tmp_path / "afile").write_text("")
        else:
            target = ro
        r = runner.invoke(cli, ["build", "dense_b0", "--no-verify", "--artifacts", str(target)])
        assert r.exit_code == 1 and "cannot write to" in r.output
    finally:
        ro.chmod(0o700)


def test_info_describes_any_onnx_file(small_build, tmp_path):
    r = runner.invoke(cli, ["info", str(small_build / "dense_b0" / "model.onnx"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["inputs"][0]["shape"] == ["batch", 64] and info["opset"] == 18 and info["ir_version"] == 10
    assert info["metadata"]["zoo.name"] == "dense_b0"
    assert info["sha256"] == sha256_file(small_build / "dense_b0" / "model.onnx")
    from zoo.exporters import fold_batchnorm

    # BatchNorm is folded into the Linear layers and the graph optimiser folds constants further,
    # so the file holds slightly fewer numbers than the folded PyTorch model.
    folded = zoo.count_params(fold_batchnorm(zoo.create("dense_b0", input_dim=64)))
    assert 0.99 * folded <= info["params"] <= folded
    text = runner.invoke(cli, ["info", str(small_build / "dense_b0" / "model.onnx")]).output
    assert "batch" in text and "zoo.seed = 0" in text
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    r = runner.invoke(cli, ["info", str(tmp_path / "junk.onnx")])
    assert r.exit_code == 1 and "not a readable ONNX model" in r.output


def test_compound_coefficients_survive_the_manifest():
    """A --phi variant with its own alpha/beta/gamma is named for them and rebuilt with them (zoo
    verify and --check rebuild from the manifest entry); the paper's coefficients add nothing."""
    from zoo.builder.artifact import ModelRequest

    custom = zoo.compound(1, alpha=1.4, beta=1.1, gamma=1.1)
    assert custom.name == "dense_phi1_a1.4_b1.1_g1.1" and custom.name != zoo.compound(1).name
    req = ModelRequest(variant=custom)
    entry = {"model": custom.name, "scaling": req.scaling(), "seed": 0, "num_classes": 10, "flavor": "paper",
             "opset_version": 18, "exporter": "dynamo", "ir_version": 10}
    assert entry["scaling"]["coefficients"] == {"alpha": 1.4, "beta": 1.1, "gamma": 1.1}
    back = ModelRequest.from_entry(entry).variant
    assert (back.depth, back.width, back.input_dim) == (custom.depth, custom.width, custom.input_dim)
    assert "coefficients" not in ModelRequest(variant=zoo.compound(1)).scaling()
