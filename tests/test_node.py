"""The artifacts in JavaScript: onnxruntime-node and onnxruntime-web (wasm) via verify/node/verify.mjs.

Nothing here is skipped: Node.js and the packages of verify/node are required (CI installs them
with ``cd verify/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci``); without them the tests fail and
say what to install.

To stay fast, the suite builds reduced variants (input width 16, 10 classes): dense_b0 with the
default dynamo exporter (what is published) and dense_b1 with the torchscript exporter (seconds
instead of tens of seconds), each in fp32, int8 and fp16 exactly as ``zoo build --precision fp32,int8,fp16``
makes them. ``ZOO_JS_TEST_VARIANTS=all`` (or a comma-separated list) checks more variants the
same way; the full-size check of all eight runs on the published artifacts elsewhere in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from zoo.exporters import ExportSpec
from zoo.builder.steps import precision_extra
from zoo.verify import js
from zoo.verify.parity import DEFAULT_TOLERANCES, Tolerance, error_metrics
from zoo.builder import manifest as mf
from zoo.builder.artifact import read_tensor, request_for, tensor_bytes
from zoo.builder.pipeline import build
from zoo.errors import ManifestError, ZooError
from zoo.model.scaling import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "node"
SMALL = {"input_dim": 16, "num_classes": 10}
PRECISIONS = ("fp32", "int8", "fp16")


def _variants() -> list[str]:
    env = os.environ.get("ZOO_JS_TEST_VARIANTS", "").strip()
    if env == "all":
        return list(VARIANTS)
    return [n.strip() for n in env.split(",") if n.strip()] or ["dense_b0", "dense_b1"]


def require_js(*runtimes: str) -> None:
    """Fail (never skip) when a JavaScript runtime is missing."""
    for r in runtimes or ("node", "web"):
        reason = js.js_available(r)
        if reason is not None:
            pytest.fail(f"{js.RUNTIMES[r]} is required for these tests and is unavailable: {reason}")


def parity_validator() -> jsonschema.Draft202012Validator:
    schema = mf.schema()
    return jsonschema.Draft202012Validator({**schema["$defs"]["parity"], "$defs": schema["$defs"]})


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    require_js()
    out = tmp_path_factory.mktemp("js-artifacts")
    requests = [
        request_for(n, **SMALL, spec=ExportSpec(exporter="dynamo" if n == "dense_b0" else "torchscript"))
        for n in _variants()
    ]
    results = build(requests, out, extras=[precision_extra(PRECISIONS, verify=False)])
    assert [r.status for r in results] == ["ok"] * len(requests), [r.error for r in results]
    return out


@pytest.fixture(scope="module")
def results(artifacts) -> dict[str, list[dict]]:
    return js.run_js(artifacts, mf.load(artifacts))


def copy_model(artifacts: Path, dest: Path, name: str = "dense_b0", precisions=("fp32",)) -> Path:
    """A one-model artifacts folder holding only ``precisions`` of ``name``."""
    manifest = mf.load(artifacts)
    entry = json.loads(json.dumps(mf.entry(manifest, name)))
    entry["files"] = [f for f in entry["files"] if f["role"] != "model" or f["precision"] in precisions]
    for f in entry["files"]:
        (dest / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifacts / f["path"], dest / f["path"])
    mf.save(dest / mf.MANIFEST_NAME, dict(manifest, models=[entry]))
    return dest


def perturb_one_weight(model_path: Path, delta: float = 5.0) -> None:
    """Add ``delta`` to one element of the classifier's weight (the initializer feeding the output)."""
    proto = onnx.load(str(model_path))
    inits = {t.name: t for t in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers[proto.graph.output[0].name]
    while not any(i in inits and len(inits[i].dims) == 2 for i in node.input):  # Add(bias) -> MatMul
        node = next(producers[i] for i in node.input if i in producers)
    weight = next(inits[i] for i in node.input if i in inits and len(inits[i].dims) == 2)
    w = numpy_helper.to_array(weight).copy()
    w.flat[0] += delta
    weight.CopyFrom(numpy_helper.from_array(w, name=weight.name))
    onnx.save(proto, str(model_path))


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([js.node_executable() or "node", str(js.SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, cwd=js.NODE_DIR)


# --- the runtimes are there --------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["node", "web"])
def test_runtime_is_installed(runtime):
    require_js(runtime)
    version = js.js_version(runtime)
    assert version.startswith("node v") and f"{js.RUNTIMES[runtime]} 1." in version


def test_unknown_runtime_is_a_value_error():
    with pytest.raises(ValueError, match="unknown JavaScript runtime 'deno'"):
        js.js_available("deno")


def test_example_and_verifier_pin_the_same_onnxruntime():
    pinned = json.loads((js.NODE_DIR / "package.json").read_text())["dependencies"]
    example = json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    assert example["onnxruntime-node"] == pinned["onnxruntime-node"] == pinned["onnxruntime-web"]
    lock = json.loads((js.NODE_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-node"]["version"] == pinned["onnxruntime-node"]


def test_tolerances_come_from_the_python_verifier():
    args = js.tolerance_args()
    given = {a.split("=")[0]: tuple(map(float, a.split("=")[1].split(","))) for a in args[1::2]}
    assert args[0::2] == ["--tol"] * len(DEFAULT_TOLERANCES)
    assert given == {p: (t.atol, t.rtol) for p, t in DEFAULT_TOLERANCES.items()}


# --- every variant, every precision, both runtimes --------------------------------------------


def test_every_variant_agrees_in_node_and_web(artifacts, results):
    manifest = mf.load(artifacts)
    validator = parity_validator()
    assert list(results) == [m["model"] for m in manifest["models"]] == _variants()
    for entry in manifest["models"]:
        records = results[entry["model"]]
        seen = {(r["backend"], r["precision"]) for r in records}
        assert seen == {(b, p) for b in ("node", "web") for p in PRECISIONS}, seen
        for rec in records:
            validator.validate(rec)
            what = f"{entry['model']} {rec['runtime']} {rec['precision']}: {rec['reason']}"
            assert rec["verdict"] == "pass", what
            tol = DEFAULT_TOLERANCES[rec["precision"]]
            assert (rec["atol"], rec["rtol"]) == (tol.atol, tol.rtol)
            assert rec["runtime"] == js.RUNTIMES[rec["backend"]] and rec["reference"] == "test-data"
            assert rec["version"] == js.js_version(rec["backend"])
            assert rec["batch_sizes"] == [3] and rec["distributions"] == ["test_data_set_0"]
            assert rec["output"] == "logits" and rec["failed_check"] is None
            if rec["precision"] == "fp32":
                assert rec["top1_agreement"] == 1.0
            assert rec["cosine_similarity"] > (0.9999 if rec["precision"] == "fp32" else 0.99)
            assert 0 <= rec["mean_abs_error"] <= rec["p99_abs_error"] <= rec["max_abs_error"]
        # The records belong in the manifest like any other runtime's.
        entry["parity"].extend(records)
    mf.validate(manifest)


def test_node_agrees_with_python_onnxruntime_on_the_same_files(artifacts, results):
    """The JavaScript runtimes compute what ONNX Runtime's Python package computes (same errors)."""
    manifest = mf.load(artifacts)
    for entry in manifest["models"]:
        x = read_tensor((artifacts / entry["test_data"]["sets"][0] / "input_0.pb").read_bytes())
        y = read_tensor((artifacts / entry["test_data"]["sets"][0] / "output_0.pb").read_bytes())
        for f in (f for f in entry["files"] if f["role"] == "model"):
            sess = ort.InferenceSession(str(artifacts / f["path"]), providers=["CPUExecutionProvider"])
            got = sess.run(None, {"input": x})[0]
            expected = error_metrics(got, y, DEFAULT_TOLERANCES[f["precision"]])
            rec = next(r for r in results[entry["model"]] if r["backend"] == "node" and r["precision"] == f["precision"])
            slack = 1e-5 if f["precision"] == "fp32" else 0.05 * expected["max_abs_error"] + 1e-4
            assert rec["max_abs_error"] == pytest.approx(expected["max_abs_error"], abs=slack), f["path"]


def test_table_on_stdout_and_python_entry_point(artifacts):
    proc = subprocess.run([sys.executable, "-m", "zoo.verify.js", str(artifacts), "--runtimes", "node",
                           "--precisions", "int8"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["model", "runtime", "precision", "file", "verdict"]
    body = [ln.split() for ln in lines[2:]]
    assert [(r[0], r[1], r[2], r[4]) for r in body] == [(n, "onnxruntime-node", "int8", "pass") for n in _variants()]


# --- failures are caught, and named ------------------------------------------------------------


def test_perturbed_artifact_fails_naming_the_worst_error(artifacts, tmp_path):
    folder = copy_model(artifacts, tmp_path)
    model = folder / "dense_b0" / "model.onnx"
    perturb_one_weight(model)

    # What the worst error is, computed independently with ONNX Runtime in Python.
    x = read_tensor((folder / "dense_b0/test_data_set_0/input_0.pb").read_bytes())
    y = read_tensor((folder / "dense_b0/test_data_set_0/output_0.pb").read_bytes()).astype(np.float64)
    got = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    diff = np.abs(got - y)
    tol = DEFAULT_TOLERANCES["fp32"]
    assert not np.all(diff <= tol.atol + tol.rtol * np.abs(y)), "the perturbation must be detectable"
    worst = np.unravel_index(np.argmax(diff - (tol.atol + tol.rtol * np.abs(y))), diff.shape)

    proc = run_script(str(folder), *js.tolerance_args(), "--runtimes", "node")
    assert proc.returncode == 1, proc.stderr
    failure = proc.stderr.strip().splitlines()[-1]
    assert failure.startswith("FAILED: 1 of 1 check(s); worst: dense_b0 dense_b0/model.onnx onnxruntime-node (fp32)")
    assert f"max abs error {diff.max():.2e}".replace("e-0", "e-").replace("e+0", "e+") in failure
    assert f"worst element [{worst[0]}, {worst[1]}]" in failure
    assert "fail" in proc.stdout  # the table still comes

    records = js.run_js(folder, mf.load(folder))["dense_b0"]
    assert [(r["backend"], r["verdict"], r["failed_check"]) for r in records] == [
        ("node", "fail", "values"), ("web", "fail", "values")]
    for rec in records:
        parity_validator().validate(rec)
        assert rec["max_abs_error"] == pytest.approx(diff.max(), rel=1e-3)
        assert "differs: max abs error" in rec["reason"]


def _rewrite_output(folder: Path, fn) -> None:
    path = folder / "dense_b0/test_data_set_0/output_0.pb"
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    name, arr = fn(t.name, numpy_helper.to_array(t))
    path.write_bytes(tensor_bytes(arr, name))


def test_wrong_output_name_fails_the_names_check(artifacts, tmp_path):
    folder = copy_model(artifacts, tmp_path)
    _rewrite_output(folder, lambda name, a: ("probabilities", a))
    (rec,) = js.run_js(folder, mf.load(folder), runtimes=("node",))["dense_b0"]
    assert (rec["verdict"], rec["failed_check"]) == ("fail", "names")
    assert "probabilities" in rec["reason"] and "logits" in rec["reason"]


def test_wrong_output_shape_fails_the_shapes_check(artifacts, tmp_path):
    folder = copy_model(artifacts, tmp_path)
    _rewrite_output(folder, lambda name, a: (name, np.ascontiguousarray(a[:, :9])))
    (rec,) = js.run_js(folder, mf.load(folder), runtimes=("node",))["dense_b0"]
    assert (rec["verdict"], rec["failed_check"]) == ("fail", "shapes")
    assert "[3,10]" in rec["reason"] and "[3,9]" in rec["reason"]


def test_metrics_are_those_of_the_python_verifier(tmp_path):
    """On an Identity model the actual output is the input: every statistic must match verify/parity.py."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    y = (x + rng.normal(scale=1e-4, size=x.shape)).astype(np.float32)
    y[2, 3] = 0.0  # a zero reference: the relative error's floor
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["logits"])], "identity",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 7])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 7])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=8)
    (tmp_path / "m/test_data_set_0").mkdir(parents=True)
    (tmp_path / "m/model.onnx").write_bytes(model.SerializeToString())
    (tmp_path / "m/test_data_set_0/input_0.pb").write_bytes(tensor_bytes(x, "input"))
    (tmp_path / "m/test_data_set_0/output_0.pb").write_bytes(tensor_bytes(y, "logits"))
    manifest = {"models": [{"model": "m", "files": [{"path": "m/model.onnx", "role": "model", "precision": "fp32"}],
                            "test_data": {"batch": 4, "sets": ["m/test_data_set_0"]}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    tol = Tolerance(atol=1e-4, rtol=1e-3)
    proc = run_script(str(tmp_path / "manifest.json"), "--tol", "fp32=1e-4,1e-3", "--json")
    expected = error_metrics(x, y, tol)
    assert proc.returncode == (0 if expected["pass"] else 1), proc.stderr
    for rec in json.loads(proc.stdout)["models"]["m"]:
        for key in ("max_abs_error", "max_rel_error", "mean_abs_error", "p99_abs_error", "cosine_similarity",
                    "rel_l2_error", "top1_agreement"):
            assert rec[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-15), key
        assert rec["verdict"] == ("pass" if expected["pass"] else "fail")


# --- check_files: the build's check before anything is written ----------------------------------


def test_check_files_checks_bytes_in_memory(artifacts, tmp_path, monkeypatch):
    manifest = mf.load(artifacts)
    entry = mf.entry(manifest, _variants()[-1])
    entry["files"] = [f for f in entry["files"] if f["precision"] in ("fp32", "int8")]  # the entry decides
    files = {f["path"]: (artifacts / f["path"]).read_bytes() for f in entry["files"]}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    records = js.check_files(files, entry, ("node", "web"))
    assert [(r["backend"], r["precision"], r["verdict"]) for r in records] == [
        (b, p, "pass") for p in ("fp32", "int8") for b in ("node", "web")]
    assert list(scratch.iterdir()) == []  # the temporary artifacts folder is gone

    # A perturbed model given as bytes fails the same way.
    fp32 = next(f["path"] for f in entry["files"] if f["role"] == "model" and f["precision"] == "fp32")
    (tmp_path / "m.onnx").write_bytes(files[fp32])
    perturb_one_weight(tmp_path / "m.onnx")
    bad = dict(files, **{fp32: (tmp_path / "m.onnx").read_bytes()})
    records = js.check_files(bad, entry, ("node",))
    assert [(r["precision"], r["verdict"]) for r in records] == [("fp32", "fail"), ("int8", "pass")]

    with pytest.raises(ValueError, match="no bytes given for"):
        js.check_files({fp32: files[fp32]}, entry, ("node",))


# --- bad input, missing runtimes ---------------------------------------------------------------


def test_bad_input_is_reported_not_crashed(artifacts, tmp_path):
    proc = run_script(str(artifacts), "--runtimes", "node")  # no --tol
    assert proc.returncode == 2 and proc.stderr.startswith("error: no tolerance for fp32")
    proc = run_script(str(tmp_path), *js.tolerance_args())
    assert proc.returncode == 2 and "no manifest at" in proc.stderr
    proc = run_script(str(artifacts), *js.tolerance_args(), "--runtimes", "deno")
    assert proc.returncode == 2 and "unknown runtimes deno" in proc.stderr
    with pytest.raises(ValueError, match="not in the manifest: dense_b9"):
        js.run_js(artifacts, mf.load(artifacts), ["dense_b9"])
    with pytest.raises(ManifestError, match="no manifest at"):
        js.run_js(tmp_path, mf.load(tmp_path))
    with pytest.raises(ValueError, match="no tolerance given for precision 'int8'"):
        js.run_js(artifacts, mf.load(artifacts), runtimes=("node",), tolerances={"fp32": (1e-4, 1e-3)})

    folder = copy_model(artifacts, tmp_path / "broken")
    (folder / "dense_b0/test_data_set_0/input_0.pb").write_bytes(b"\x0a\xff")  # truncated TensorProto
    with pytest.raises(ZooError, match="input_0.pb: truncated"):
        js.run_js(folder, mf.load(folder), runtimes=("node",))


def test_missing_node_gives_unavailable_records(artifacts, monkeypatch):
    monkeypatch.setenv(js.NODE_ENV, "/nonexistent/node")
    assert js.js_available("node").startswith("Node.js not found")
    records = js.run_js(artifacts, mf.load(artifacts), ["dense_b0"], precisions=["fp32"])["dense_b0"]
    assert [(r["backend"], r["verdict"]) for r in records] == [("node", "unavailable"), ("web", "unavailable")]
    for rec in records:
        parity_validator().validate(rec)
        assert "Node.js not found" in rec["reason"]
