"""The parity matrix: backends, batch sizes, distributions; names, then shapes, then values."""

import json
import shutil
import subprocess
from dataclasses import astuple

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

import zoo
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.errors import AtolError, NameMismatchError, ShapeError
from zoo.fsutil import sha256_file
from zoo.verify.matrix import MatrixOptions, run_matrix
from zoo.verify.parity import Tolerance, check_outputs, error_metrics

from conftest import ROOT, zoo_cmd

runner = CliRunner()
CUDA = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


def test_error_metrics_and_the_tolerance_rule():
    b = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, 3.0]], dtype=np.float32)
    a = b + np.array([[1e-4, 0, 0], [0, 5e-5, 0]], dtype=np.float32)
    m = error_metrics(a, b, Tolerance(1e-4, 1e-3))
    assert m["pass"] and m["max_abs_error"] == pytest.approx(1e-4, rel=1e-3)
    # Relative error is guarded where the reference is ~0: 5e-5 / max(0, 1e-3), not / 0.
    assert m["max_rel_error"] == pytest.approx(0.05, rel=1e-3)
    assert m["top1_agreement"] == 1.0 and m["cosine_similarity"] > 0.9999
    assert not error_metrics(b + 2e-3, b, Tolerance(1e-4, 1e-3))["pass"]
    assert error_metrics(b * (1 + 5e-4), b, Tolerance(0, 1e-3))["pass"]  # rtol alone covers it
    assert not error_metrics(np.full_like(b, np.nan), b, Tolerance(1, 1))["pass"]


def test_checks_run_names_then_shapes_then_values():
    ref = {"logits": np.zeros((2, 3), np.float32)}
    tol = Tolerance(1e-4, 1e-3)
    # Wrong name and wrong shape: names are reported first.
    with pytest.raises(NameMismatchError):
        check_outputs({"out": np.ones((5, 3), np.float32)}, ref, tol)
    with pytest.raises(ShapeError):
        check_outputs({"logits": np.ones((5, 3), np.float32)}, ref, tol)
    with pytest.raises(AtolError, match="'logits' differs: max abs error 1"):
        check_outputs({"logits": np.ones((2, 3), np.float32)}, ref, tol)


def test_matrix_passes_on_every_cpu_backend_and_records_versions(small_build):
    model = zoo.create("dense_b0", input_dim=64)
    data = (small_build / "dense_b0" / "model.onnx").read_bytes()
    records = run_matrix(model, data, input_dim=64, seed=0, options=MatrixOptions(batch_sizes=(1, 7)))
    by = {r["backend"]: r for r in records}
    assert {"onnxruntime:CPUExecutionProvider:disabled", "onnxruntime:CPUExecutionProvider:all", "reference",
            "openvino", "tract"} <= set(by)
    for r in records:
        assert r["verdict"] == "pass", r
        assert r["version"] and r["batch_sizes"] == [1, 7] and r["distributions"] == ["normal", "normal_x10", "zeros"]
        jsonschema.validate(r, {"$defs": mf.schema()["$defs"], "$ref": "#/$defs/parity"})
        if r["backend"] != "openvino:default":  # that one runs bf16 where the CPU has it: its own rule
            assert 0 <= r["max_abs_error"] <= 1e-3 and r["top1_agreement"] == 1.0
    assert by["onnxruntime:CPUExecutionProvider:all"]["version"] == ort.__version__


def test_openvino_default_precision_is_checked_under_its_own_tolerance(small_build):
    """OpenVINO without INFERENCE_PRECISION_HINT: a backend of its own, whose label says what the
    CPU plugin chose (bf16 on CPUs with AVX-512 BF16 / AMX), under verify.parity.BACKEND_TOLERANCES."""
    from zoo.verify.backends import RUNTIME_BACKENDS, OpenVinoDefaultBackend
    from zoo.verify.parity import BACKEND_TOLERANCES, DEFAULT_TOLERANCES, tolerance_for

    assert RUNTIME_BACKENDS["openvino:default"] is OpenVinoDefaultBackend
    assert OpenVinoDefaultBackend().name == "openvino:default"
    for p, tol in BACKEND_TOLERANCES["openvino:default"].items():
        assert tolerance_for(p, backend="openvino:default") == tol
        assert tol.atol >= DEFAULT_TOLERANCES[p].atol and tol.rtol >= DEFAULT_TOLERANCES[p].rtol
    assert tolerance_for("fp32", backend="openvino") == DEFAULT_TOLERANCES["fp32"]

    model = zoo.create("dense_b0", input_dim=64)
    data = (small_build / "dense_b0" / "model.onnx").read_bytes()
    (rec,) = run_matrix(model, data, input_dim=64, seed=0,
                        options=MatrixOptions(batch_sizes=(7,), backends=[OpenVinoDefaultBackend()]))
    assert rec["verdict"] == "pass", rec
    assert (rec["atol"], rec["rtol"]) == astuple(BACKEND_TOLERANCES["openvino:default"]["fp32"])
    precision = rec["label"].removeprefix("OpenVINO's default inference precision on this CPU: ")
    assert precision in ("bf16", "f32", "f16"), rec["label"]
    if precision == "f32":
        assert rec["max_abs_error"] <= 1e-3
    else:  # what the README tells consumers: far from the f32 hint's 1e-5
        assert rec["max_abs_error"] > 1e-2


def _tamper(src, dst, change):
    """Copy an artifacts folder, rewrite its model with ``change`` and re-record its hash, as a
    publisher of a broken model would: the bytes are trusted, the numbers are not."""
    shutil.copytree(src, dst)
    path = dst / "dense_b0" / "model.onnx"
    proto = change(onnx.load(str(path)))
    path.write_bytes(proto.SerializeToString())
    manifest = mf.load(dst)
    for f in manifest["models"][0]["files"]:
        if f["role"] == "model":
            f["sha256"], f["bytes"] = sha256_file(path), path.stat().st_size
    manifest["models"][0]["metadata"]["model_sha"] = sha256_file(path)
    mf.save(dst / "manifest.json", manifest)
    return dst


def perturb_weight(proto):
    init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(init).copy()
    arr.flat[arr.size // 2] += 3.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    return proto


def rename_output(proto):
    old = proto.graph.output[0].name
    for n in proto.graph.node:
        n.output[:] = ["scores" if o == old else o for o in n.output]
    proto.graph.output[0].name = "scores"
    return proto


def fix_batch(proto):
    for vi in (proto.graph.input[0], proto.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = 2
    return proto


@pytest.mark.parametrize(
    "change,words",
    [
        (perturb_weight, "output 'logits' differs: max abs error"),
        (fix_batch, "batch 7"),
        (rename_output, "output names ['scores'] != expected ['logits']"),
    ],
)
def test_broken_artifacts_fail_verify_with_a_clear_reason(small_build, tmp_path, change, words):
    art = _tamper(small_build, tmp_path / "a", change)
    r = runner.invoke(cli, ["verify", "dense_b0", "--artifacts", str(art), "--runtimes", "reference",
                            "--batch-sizes", "2,7", "--json"])
    assert r.exit_code == 1
    assert words in r.output and "parity check(s) failed" in r.output
    records = json.loads(r.stdout)["dense_b0"]
    failed = [x for x in records if x["verdict"] == "fail"]
    expected_check = {perturb_weight: "values", fix_batch: "shapes", rename_output: "names"}[change]
    assert failed and {x["failed_check"] for x in failed} == {expected_check}
    if change is fix_batch:
        assert "not dynamic" in failed[0]["reason"]


@pytest.mark.parametrize("change,check", [(perturb_weight, "values"), (fix_batch, "shapes"), (rename_output, "names")])
def test_broken_exports_fail_the_build_and_never_enter_the_manifest(tmp_path, monkeypatch, change, check):
    import zoo.builder.artifact as artifact

    real = artifact.export_model
    monkeypatch.setattr(artifact, "export_model", lambda *a, **k: change(real(*a, **k)))
    r = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "32", "--artifacts", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "failed" in r.output and not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "dense_b0" / "model.onnx").exists()


def test_asking_for_cuda_without_it_exits_3_never_a_cpu_pass(small_build, tmp_path):
    art = tmp_path / "a"
    shutil.copytree(small_build, art)
    before = (art / "manifest.json").read_bytes()
    r = runner.invoke(cli, ["verify", "dense_b0", "--artifacts", str(art), "--providers", "cuda",
                            "--runtimes", "reference", "--batch-sizes", "1", "--json"])
    if CUDA:
        assert r.exit_code == 0, r.output
        (cuda,) = [x for x in json.loads(r.stdout)["dense_b0"] if x["provider"] == "CUDAExecutionProvider"]
        assert cuda["verdict"] == "pass"
        return
    # asked for by its alias, missing here: one line, exit 3, before any work, nothing recorded
    assert r.exit_code == 3, r.output
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: zoo verify: asked for and not available: ") and "CUDAExecutionProvider" in r.stderr
    assert (art / "manifest.json").read_bytes() == before
    # the library still records it as unavailable (never a CPU pass) when a caller runs the backend
    from zoo.verify.backends import OrtBackend
    from zoo.verify.matrix import Case, check_backend
    from zoo.verify.parity import tolerance_for

    x = np.zeros((1, 64), np.float32)
    rec = check_backend(OrtBackend(provider="CUDAExecutionProvider"), (art / "dense_b0/model.onnx").read_bytes(),
                        [Case(1, "zeros", x, {"logits": np.zeros((1, 10), np.float32)})], "input", "fp32",
                        tolerance_for("fp32"))
    assert rec["verdict"] == "unavailable" and rec["max_abs_error"] is None and "CUDAExecutionProvider" in rec["reason"]


def test_recorded_parity_matches_verify_json_and_validates(small_build, tmp_path):
    art = tmp_path / "a"
    shutil.copytree(small_build, art)
    r = runner.invoke(cli, ["verify", "--all", "--artifacts", str(art), "--runtimes", "openvino,tract",
                            "--batch-sizes", "1,7", "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)["dense_b0"]
    recorded = mf.load(art)["models"][0]["parity"]  # load() validates against the schema
    assert recorded == printed and {x["backend"] for x in printed} >= {"openvino", "tract"}
    # Verifying again replaces records of the same backend instead of piling them up.
    runner.invoke(cli, ["verify", "--all", "--artifacts", str(art), "--runtimes", "tract", "--batch-sizes", "1"])
    backends = [x["backend"] for x in mf.load(art)["models"][0]["parity"]]
    assert backends.count("tract") == 1 and "openvino" in backends


def test_verify_refuses_a_file_that_does_not_match_its_hash(small_build, tmp_path):
    art = tmp_path / "a"
    shutil.copytree(small_build, art)
    with open(art / "dense_b0" / "model.onnx", "ab") as f:
        f.write(b"\0")
    r = runner.invoke(cli, ["verify", "dense_b0", "--artifacts", str(art)])
    assert r.exit_code == 1 and "does not match the manifest's sha256" in r.output


@pytest.mark.parametrize(
    "args,words,code",
    [
        (["dense_b9"], "unknown model 'dense_b9'; ", 2),
        (["dense_b0", "--runtimes", "onnxjs"], "unknown runtime 'onnxjs'", 2),
        (["dense_b0", "--batch-sizes", "0"], "expected positive integers", 2),
        (["dense_b0", "--artifacts", "/nonexistent"], "no manifest at", 2),
    ],
)
def test_bad_verify_input(small_build, args, words, code):
    if "--artifacts" not in args:
        args = [*args, "--artifacts", str(small_build), "--no-record"]
    r = runner.invoke(cli, ["verify", *args])
    assert r.exit_code == code and words in r.output, r.output


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU and onnxruntime-gpu here: GPU parity runs only where one is present")
def test_gpu_parity_against_pytorch_on_cpu_and_cuda(small_build):
    model = zoo.create("dense_b0", input_dim=64)
    data = (small_build / "dense_b0" / "model.onnx").read_bytes()
    records = run_matrix(model, data, input_dim=64, seed=0,
                         options=MatrixOptions(providers=["CUDAExecutionProvider"], runtimes=[]))
    refs = {r["reference"] for r in records if r["verdict"] == "pass"}
    assert refs == {"torch-cpu", "torch-cuda"}


@pytest.mark.slow
def test_full_build_all_passes_every_cpu_backend_and_rebuilds_byte_identical(tmp_path):
    """The real `zoo build --all` (full-size B0-B7, fp32 and int8): every CPU backend passes, every file
    matches the committed record, and a rebuild in another process matches it by hash, file by file."""
    out = tmp_path / "artifacts"
    subprocess.run(zoo_cmd("build", "--all", "--precision", "fp32,int8", "--artifacts", str(out)), check=True, cwd=tmp_path)
    manifest = mf.load(out)
    assert [m["model"] for m in manifest["models"]] == list(zoo.VARIANTS)
    for m in manifest["models"]:
        fp32 = {r["backend"]: r for r in m["parity"] if r["precision"] == "fp32"}
        for backend in ("onnxruntime:CPUExecutionProvider:disabled", "onnxruntime:CPUExecutionProvider:all",
                        "reference", "openvino", "tract"):
            assert fp32[backend]["verdict"] == "pass", (m["model"], backend, fp32[backend])
        # Every precision also ran in Node.js and the browser's WebAssembly runtime (issue 7).
        js = {(r["backend"], r["precision"]): r["verdict"] for r in m["parity"] if r["backend"] in ("node", "web")}
        assert js == {(b, p): "pass" for b in ("node", "web") for p in ("fp32", "int8")}, (m["model"], js)
        assert m["params"] == zoo.variant_config(m["model"]).params()
    # The committed record (artifacts/SHA256SUMS, issue 11): every file of this build, byte for byte.
    record = dict(line.split(None, 1)[::-1] for line in (ROOT / "artifacts" / "SHA256SUMS").read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    built = {f["path"]: f["sha256"] for m in manifest["models"] for f in m["files"]}
    assert built == record, sorted(p for p in built.keys() | record.keys() if built.get(p) != record.get(p))
    r = subprocess.run(zoo_cmd("build", "--all", "--check", str(out / "manifest.json"), "--json"),
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["mismatches"] == 0 and len(report["files"]) == 8 * 4


def test_nan_outputs_fail_with_null_errors_and_strict_json(small_build, tmp_path):
    """A model whose outputs are NaN fails on values; its record has null errors, never NaN or Infinity."""
    from zoo.jsonio import dumps
    from zoo.verify.backends import OrtBackend
    from zoo.verify.matrix import Case, check_backend
    from zoo.verify.parity import tolerance_for

    proto = onnx.load(str(small_build / "dense_b0" / "model.onnx"))
    init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))  # a weight every output depends on
    w = numpy_helper.to_array(init).copy()
    w.flat[:] = np.nan
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    folder = small_build / "dense_b0" / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(folder / "output_0.pb")))
    rec = check_backend(OrtBackend(), proto.SerializeToString(), [Case(len(x), "test", x, {"logits": y})],
                        "input", "fp32", tolerance_for("fp32"), reference="test-data")
    assert rec["verdict"] == "fail" and rec["failed_check"] == "values" and "not finite" in rec["reason"]
    for k in ("max_abs_error", "max_rel_error", "mean_abs_error", "p99_abs_error", "cosine_similarity",
              "rel_l2_error"):
        assert rec[k] is None, k
    text = dumps(rec)
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    # the record is a valid manifest parity record, and a manifest holding it is written strictly
    manifest = mf.load(small_build)
    entry = dict(manifest["models"][0], parity=[rec])
    mf.save(tmp_path / "manifest.json", mf.upsert(manifest, entry))
    raw = (tmp_path / "manifest.json").read_text()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    # error_metrics on its own: non-finite statistics are None, and the check fails
    m = error_metrics(np.array([[np.inf, 0.0]]), np.array([[1.0, 0.0]]), Tolerance(1e-4, 1e-3))
    assert m["pass"] is False and m["max_abs_error"] is None and m["rel_l2_error"] is None


def test_python_and_javascript_records_have_one_shape(small_build):
    """verify.records.parity_record builds both: same fields, same order, valid against the schema."""
    from zoo.verify import js
    from zoo.verify.backends import OrtBackend
    from zoo.verify.matrix import Case, check_backend
    from zoo.verify.parity import tolerance_for
    from zoo.verify.records import FIELDS

    entry = mf.load(small_build)["models"][0]
    folder = small_build / "dense_b0" / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(folder / "output_0.pb")))
    py = check_backend(OrtBackend(), (small_build / "dense_b0" / "model.onnx").read_bytes(),
                       [Case(len(x), "test", x, {"logits": y})], "input", "fp32", tolerance_for("fp32"),
                       reference="test-data")
    node = js._unavailable(entry, "node", "fp32", "no Node.js here", tolerance_for("fp32"))
    assert list(py) == list(node) == list(FIELDS)
    assert py["verdict"] == "pass" and node["verdict"] == "unavailable" and node["batch_sizes"] == [len(x)]
    schema = mf.schema()
    for rec in (py, node):
        jsonschema.validate(rec, {**schema["$defs"]["parity"], "$defs": schema["$defs"]})
