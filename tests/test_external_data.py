"""Models saved with external data (issue 14, item 5): a model over 2 GiB cannot be one protobuf
message, so its tensors go to ``FILE.data`` beside it. ``zoo build --external-data`` writes every
model file that way (so a small model exercises the layout), and every checker loads it: the Python
matrix (ONNX Runtime, the reference evaluator, OpenVINO, tract), onnxruntime-node and -web, and the
C and C++ programs. The browser page is tested in test_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from zoo import onnxio
from zoo.builder import manifest as mf
from zoo.builder.artifact import make_artifact, read_tensor, request_for
from zoo.builder.pipeline import build
from zoo.cli import cli
from zoo.verify import c, js

from conftest import zoo_cmd

# Every runtime CI installs: the Python ones, Node.js and the browser engine, the C / C++ programs.
ALL_RUNTIMES = ("reference", "openvino", "openvino:default", "tract", "node", "web", "c", "cpp")


@pytest.fixture(scope="module")
def ext_build(tmp_path_factory) -> Path:
    """dense_b0 (input width 64) built with --external-data at fp32 and int8, through the CLI."""
    out = tmp_path_factory.mktemp("external")
    for r in ("c", "cpp"):  # built by CI; make is a no-op then
        subprocess.run(["make", "-C", str(Path(__file__).resolve().parents[1] / "examples" / r)],
                       capture_output=True, timeout=600, check=False)
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--external-data", "--precision",
                                   "fp32,int8", "--no-bench", "--artifacts", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_the_layout_is_a_model_and_its_data_beside_it(ext_build):
    entry = mf.entry(mf.load(ext_build / "manifest.json"), "dense_b0")
    files = {f["path"]: f for f in entry["files"]}
    for model in ("dense_b0/model.onnx", "dense_b0/model.int8.onnx"):
        data = files[model + ".data"]
        assert data["role"] == "external_data" and data["of"] == model
        assert data["precision"] == files[model]["precision"]
        for f in (files[model], data):
            raw = (ext_build / f["path"]).read_bytes()
            assert len(raw) == f["bytes"] and hashlib.sha256(raw).hexdigest() == f["sha256"]
        proto = onnx.load(str(ext_build / model), load_external_data=False)
        assert onnxio.locations(proto) == ["model.onnx.data" if model.endswith("model.onnx") else "model.int8.onnx.data"]
        # The weights really are outside, page-aligned; the small tensors stay inline.
        assert data["bytes"] > 20 * files[model]["bytes"]
        for t in onnxio.iter_tensors(proto):
            if t.data_location == onnx.TensorProto.EXTERNAL:
                kv = {e.key: e.value for e in t.external_data}
                assert int(kv["offset"]) % onnxio.ALIGN == 0 and int(kv["length"]) >= onnxio.EXTERNAL_MIN_BYTES
    # Loaded from its path, ONNX Runtime reproduces the test data.
    sess = ort.InferenceSession(str(ext_build / "dense_b0/model.onnx"), providers=["CPUExecutionProvider"])
    x = read_tensor((ext_build / "dense_b0/test_data_set_0/input_0.pb").read_bytes())
    y = read_tensor((ext_build / "dense_b0/test_data_set_0/output_0.pb").read_bytes())
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], y, atol=1e-4, rtol=1e-3)


def test_the_files_are_reproducible(ext_build):
    """--check rebuilds the model with external data (recorded in the manifest) byte for byte."""
    proc = subprocess.run(zoo_cmd("build", "dense_b0", "--check", str(ext_build / "manifest.json"), "--json"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["files"]
    assert {r["path"] for r in rows} >= {"dense_b0/model.onnx.data", "dense_b0/model.int8.onnx.data"}
    assert all(r["match"] for r in rows)


def test_every_runtime_passes_the_external_data_model(ext_build):
    if c.c_available("c") or c.c_available("cpp") or js.js_available("node") or js.js_available("web"):
        pytest.fail("CI builds the C examples and installs verify/node; see .ci/run")
    proc = subprocess.run(zoo_cmd("verify", "dense_b0", "--artifacts", str(ext_build), "--batch-sizes", "1,7",
                                  "--runtimes", ",".join(ALL_RUNTIMES), "--json"),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)["dense_b0"]
    seen = {(r["backend"], r["precision"]) for r in recs if r["verdict"] == "pass"}
    for runtime in ALL_RUNTIMES + ("onnxruntime:CPUExecutionProvider:all",):
        for precision in ("fp32", "int8"):
            assert (runtime, precision) in seen, (runtime, precision, [(r["backend"], r["verdict"], r["reason"]) for r in recs])


def test_a_missing_data_file_is_one_line(ext_build, tmp_path):
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(ext_build, bad)
    (bad / "dense_b0/model.onnx.data").unlink()
    proc = subprocess.run(zoo_cmd("verify", "dense_b0", "--artifacts", str(bad), "--runtimes", "tract"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: zoo verify: dense_b0: ") and "model.onnx.data (external data of" in lines[-1]
    assert "Traceback" not in proc.stderr
    # verify.mjs says the same before running anything.
    proc = subprocess.run(js.script_command(bad, ["dense_b0"], ["node"], ["fp32"], json_output=False),
                          capture_output=True, text=True, timeout=300, cwd=js.NODE_DIR)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: dense_b0: dense_b0/model.onnx.data (external data of dense_b0/model.onnx) is missing"]


def test_a_model_that_points_its_data_elsewhere_is_refused(ext_build, tmp_path):
    """The model's own location field must name a data file the manifest lists beside it: zoo verify
    never hands a runtime a model that would read another file (here, one outside the folder)."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ext_build, bad)
    secret = tmp_path / "secret.bin"
    secret.write_bytes((bad / "dense_b0/model.onnx.data").read_bytes())
    path = bad / "dense_b0/model.onnx"
    proto = onnx.load(str(path), load_external_data=False)
    for t in onnxio.iter_tensors(proto):
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../../secret.bin"
    data = proto.SerializeToString(deterministic=True)
    path.write_bytes(data)
    manifest = mf.load(bad / "manifest.json")
    rec = mf.file_record(manifest, "dense_b0", "model", "fp32")
    rec.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    mf.save(bad / "manifest.json", manifest)
    proc = subprocess.run(zoo_cmd("verify", "dense_b0", "--artifacts", str(bad), "--precision", "fp32"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: zoo verify: dense_b0: dense_b0/model.onnx refers to external data '../../secret.bin', which the "
        "manifest does not list beside it; refusing to load it")


def test_predict_mjs_takes_external_data_beside_the_model_only(ext_build, tmp_path):
    from onnx import numpy_helper

    x = read_tensor((ext_build / "dense_b0/test_data_set_0/input_0.pb").read_bytes())
    inp = tmp_path / "x.pb"
    inp.write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    model = str(ext_build / "dense_b0/model.onnx")
    y = read_tensor((ext_build / "dense_b0/test_data_set_0/output_0.pb").read_bytes())
    for runtime in ("node", "web"):
        proc = subprocess.run([js.node_executable(), "predict.mjs", "--runtime", runtime, "--external-data",
                               "model.onnx.data", model, str(inp)], capture_output=True, text=True, timeout=300,
                              cwd=js.NODE_DIR)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        np.testing.assert_allclose(np.array(out["data"]).reshape(out["dims"]), y, atol=1e-4, rtol=1e-3)
    proc = subprocess.run([js.node_executable(), "predict.mjs", "--runtime", "web", "--external-data",
                           "../x/model.onnx.data", model, str(inp)], capture_output=True, text=True, timeout=300,
                          cwd=js.NODE_DIR)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --external-data names a file beside the model (no folders)"


# --- the layout itself, and a model over the 2 GiB limit ------------------------------------------


def test_split_and_inline_are_inverse_and_deterministic():
    art = make_artifact(request_for("dense_b0", input_dim=32))
    proto = onnx.load_from_string(art.model_bytes)
    model, data = onnxio.split_external(proto, "model.onnx.data")
    assert onnxio.split_external(proto, "model.onnx.data") == (model, data)
    assert onnxio.inline(model, data) == art.model_bytes
    with pytest.raises(ValueError, match="beyond the file"):
        onnxio.inline(model, data[:-1])


def test_a_model_over_the_limit_is_written_with_external_data_without_asking(tmp_path, monkeypatch):
    """The limit is protobuf's 2 GiB; lowered here to 10 MB, so dense_b0 is "too large" for one
    file and the whole build (export check, self-check, parity matrix, int8 variant) runs from its
    files on disk, as it would for a large --phi."""
    from zoo.builder.steps import precision_extra
    from zoo.verify.matrix import MatrixOptions, build_verifier

    monkeypatch.setattr(onnxio, "INLINE_LIMIT", 10_000_000)  # fp32 15 MB, int8 4 MB
    art = make_artifact(request_for("dense_b0", input_dim=32))
    assert isinstance(art.model_ref, Path) and art.model_ref.with_name("model.onnx.data").is_file()
    assert set(art.files) >= {"dense_b0/model.onnx", "dense_b0/model.onnx.data"}

    options = MatrixOptions(batch_sizes=(1, 7), runtimes=["reference", "tract"])
    (res,) = build([request_for("dense_b0", input_dim=32)], tmp_path, verifier=build_verifier(options),
                   extras=[precision_extra(("int8",), verify=False)])
    # The int8 variant is under the limit, one file; the fp32 model is not.
    assert res.status == "ok", res.error
    roles = {f["path"]: f["role"] for f in res.entry["files"]}
    assert roles["dense_b0/model.onnx.data"] == "external_data" and "dense_b0/model.int8.onnx.data" not in roles
    assert {r["backend"] for r in res.entry["parity"] if r["verdict"] == "pass"} >= {
        "onnxruntime:CPUExecutionProvider:all", "reference", "tract"}


def test_zoo_bench_measures_the_external_data_model(ext_build, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(ext_build, art)
    proc = subprocess.run(zoo_cmd("bench", "dense_b0", "--artifacts", str(art), "--batch-sizes", "1", "--runs", "3",
                                  "--time-budget", "0.2", "--warmup", "1", "--threads", "1", "--json"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)["records"]
    assert {r["precision"] for r in recs if r["p50_ms"] > 0} == {"fp32", "int8"}
