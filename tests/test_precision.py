"""int8 and fp16 variants: they load, pass their tolerances, are byte-reproducible, and take part
in ``zoo build --precision`` and ``zoo build --check``."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from zoo.exporters.fp16 import convert_fp16
from zoo.exporters.int8 import gemm_to_matmul, per_channel_helps, quantize_int8
from zoo.exporters.variants import variant_bytes, variant_files
from zoo.spec import parse_precisions, variant_path
from zoo.verify.variants import MIN_COSINE, check_variant
from zoo.verify.matrix import MatrixOptions, make_input
from zoo.builder import manifest as mf
from zoo.builder.artifact import make_artifact, request_for
from zoo.cli import cli
from zoo.errors import AtolError
from zoo.fsutil import sha256_bytes, sha256_file

FAST = MatrixOptions(batch_sizes=(1, 7), runtimes=[])  # both CPU optimisation levels, two batches


@pytest.fixture(scope="module")
def art():
    return make_artifact(request_for("dense_b0", input_dim=64))


@pytest.fixture(scope="module")
def int8(art):
    return quantize_int8(art.model_bytes)


@pytest.fixture(scope="module")
def fp16(art):
    return convert_fp16(art.model_bytes)


def _run(data: bytes, x: np.ndarray, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _reference(art, x):
    with torch.no_grad():
        return art.model(torch.from_numpy(x)).numpy()


def _cos(a, b):
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_gemm_to_matmul_is_exact(art):
    proto = gemm_to_matmul(onnx.load_from_string(art.model_bytes))
    ops = {n.op_type for n in proto.graph.node}
    assert "Gemm" not in ops and "MatMul" in ops
    x = make_input(64, 5, "normal", 0)
    np.testing.assert_allclose(_run(proto.SerializeToString(), x), _run(art.model_bytes, x), rtol=1e-5, atol=1e-5)


def test_int8_file_holds_int8_weights_and_standard_ops_only(art, int8):
    proto = onnx.load_from_string(int8)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)  # portable: no com.microsoft ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) > 0.9 * art.params
    assert len(int8) < 0.35 * len(art.model_bytes)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["zoo.precision"] == "int8" and meta["zoo.name"] == "dense_b0"
    settings = json.loads(meta["zoo.precision_settings"])
    assert settings["per_channel"] is True  # BatchNorm-folded weights: per-channel scales pay
    # float32 in and out, the dynamic batch axis kept
    assert [i.type.tensor_type.elem_type for i in proto.graph.input] == [TensorProto.FLOAT]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_per_channel_is_chosen_from_the_weights(art):
    proto = gemm_to_matmul(onnx.load_from_string(art.model_bytes))
    nodes = [n.name for n in proto.graph.node if n.op_type == "MatMul"]
    assert per_channel_helps(proto, nodes)
    w = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)

    def one_matmul(weight):
        g = onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
            [onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
            [onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
            [numpy_helper.from_array(weight, name="w")])
        return onnx.helper.make_model(g)

    assert not per_channel_helps(one_matmul(w), ["mm"])  # channels alike: one scale does as well
    spread = (w * np.logspace(-2, 0, 64, dtype=np.float32)).astype(np.float32)  # channels 100x apart
    assert per_channel_helps(one_matmul(spread), ["mm"])


def test_fp16_file_computes_in_fp16_with_float32_io(art, fp16):
    proto = onnx.load_from_string(fp16)
    onnx.checker.check_model(proto, full_check=True)
    assert {t.data_type for t in proto.graph.initializer} == {TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert proto.graph.node[0].op_type == "Cast" and proto.graph.node[-1].op_type == "Cast"
    assert 0.45 < len(fp16) / len(art.model_bytes) < 0.55
    x = make_input(64, 3, "normal", 1)
    y = _run(fp16, x)
    assert y.dtype == np.float32 and y.shape == (3, 10)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_variants_are_byte_reproducible(art, int8, fp16, precision):
    first = {"int8": int8, "fp16": fp16}[precision]
    again = variant_bytes(art.model_bytes, precision)
    assert sha256_bytes(again) == sha256_bytes(first)
    proto = onnx.load_from_string(first)
    for leak in (tempfile.gettempdir().encode(), b"zoo-quantize", b"Traceback", b".py\""):
        assert leak not in first
    # The model's doc_string is its one line of ONNX metadata (issue 24), nothing run-specific.
    assert proto.doc_string == (f"dense_efficientnet dense_b0 (paper flavor), {precision}, input [batch, 64] float32, "
                                "10 classes") and all(not n.doc_string for n in proto.graph.node)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_variants_pass_their_tolerances_at_both_optimisation_levels(art, int8, fp16, precision):
    data = {"int8": int8, "fp16": fp16}[precision]
    records = check_variant(art, data, precision, matrix_options=FAST)
    assert [r["backend"] for r in records] == ["onnxruntime:CPUExecutionProvider:disabled",
                                               "onnxruntime:CPUExecutionProvider:all"]
    for rec in records:
        assert rec["verdict"] == "pass" and rec["precision"] == precision
        assert rec["cosine_similarity"] >= MIN_COSINE[precision]
        assert 0 < rec["rel_l2_error"] < (0.2 if precision == "int8" else 0.01)
        assert rec["batch_sizes"] == [1, 7]
        if precision == "fp16":
            assert "CPU provider" in rec["label"]  # checked, and labelled as such
    x = make_input(64, 7, "normal", 3)
    assert _cos(_run(data, x), _reference(art, x)) >= MIN_COSINE[precision]
    # the records fit the manifest schema
    entry = art.manifest_entry()
    entry["parity"] = records
    mf.validate({**mf.empty_manifest(), "models": [entry]})


def _negate_first_big_weight(data: bytes) -> bytes:
    """The same file with its first large weight negated: a variant that computes something else."""
    proto = onnx.load_from_string(data)
    for i, t in enumerate(proto.graph.initializer):
        if t.data_type in (TensorProto.INT8, TensorProto.FLOAT16) and int(np.prod(t.dims)) >= 1000:
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), name=t.name))
            return proto.SerializeToString()
    raise AssertionError("no weight to perturb")


def test_a_variant_that_disagrees_fails_with_the_typed_error(art, int8, fp16):
    with pytest.raises(AtolError, match="dense_b0 int8"):
        check_variant(art, _negate_first_big_weight(int8), "int8", matrix_options=FAST)
    with pytest.raises(AtolError, match="dense_b0 fp16 self-check"):
        check_variant(art, _negate_first_big_weight(fp16), "fp16", verify=False)


def test_precision_names():
    assert parse_precisions("int8") == ("fp32", "int8")
    assert parse_precisions("fp16, INT8,fp16") == ("fp32", "int8", "fp16")
    assert parse_precisions("int8", always_fp32=False) == ("int8",)
    assert variant_path("dense_b3", "fp16") == "dense_b3/model.fp16.onnx"
    assert variant_path("dense_b3", "fp32") == "dense_b3/model.onnx"
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        parse_precisions("fp32,bf16")


def test_build_with_precisions_then_check_matches_every_file(tmp_path):
    runner = CliRunner()
    out = tmp_path / "zoo"
    res = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--precision", "int8,fp16", "--no-verify",
                              "--no-bench", "--artifacts", str(out), "--json"])
    assert res.exit_code == 0, res.output
    manifest = mf.load(out / "manifest.json")
    entry = mf.entry(manifest, "dense_b0")
    models = {f["precision"]: f for f in entry["files"] if f["role"] == "model"}
    assert set(models) == {"fp32", "int8", "fp16"}
    for p, f in models.items():
        assert f["path"] == variant_path("dense_b0", p)
        assert sha256_file(out / f["path"]) == f["sha256"] and (out / f["path"]).stat().st_size == f["bytes"]
    assert entry["latency"] == []  # --no-bench

    # --check rebuilds the variants too: every file matches but the one whose record was tampered with
    int8_sha = models["int8"]["sha256"]
    next(f for f in manifest["models"][0]["files"] if f["precision"] == "int8")["sha256"] = "0" * 64
    mf.save(out / "manifest.json", manifest)
    res = runner.invoke(cli, ["build", "dense_b0", "--check", str(out / "manifest.json"), "--json"])
    assert res.exit_code == 1 and "1 of 5 file(s) differ" in res.output
    rows = json.loads(res.stdout[:res.stdout.rindex("}") + 1])["files"]
    assert {r["path"]: r["match"] for r in rows} == {
        "dense_b0/model.onnx": True, "dense_b0/test_data_set_0/input_0.pb": True,
        "dense_b0/test_data_set_0/output_0.pb": True, "dense_b0/model.int8.onnx": False,
        "dense_b0/model.fp16.onnx": True}
    assert next(r for r in rows if not r["match"])["actual"] == int8_sha


def test_variant_files_rebuild_from_an_artifact(art, int8, fp16):
    files = variant_files(art, ["fp32", "int8", "fp16"])
    assert set(files) == {"dense_b0/model.int8.onnx", "dense_b0/model.fp16.onnx"}
    assert files["dense_b0/model.int8.onnx"] == int8 and files["dense_b0/model.fp16.onnx"] == fp16


def test_bad_precision_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(cli, ["build", "dense_b0", "--precision", "int3", "--artifacts", str(tmp_path)])
    assert res.exit_code == 2 and "unknown precision 'int3'" in res.output
    assert not (tmp_path / "manifest.json").exists()
