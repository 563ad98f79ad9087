"""A Triton model repository (issue 24): every config.pbtxt parses with Triton's own model-config
protobuf (tritonclient) and matches the model's ports; the version folder holds model.onnx (the
directory form for a model with external data). Serving needs a Triton server, which is not
installable here (see docs/publishing.md)."""

from __future__ import annotations

import json

import onnx
from click.testing import CliRunner

from zoo.cli import cli

from formats_build import LABELS, VERSION, formats_build  # noqa: F401 - the fixture


def test_config_pbtxt_parses_and_matches_the_ports(formats_build, small_build, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    out = tmp_path / "repo"
    r = CliRunner().invoke(cli, ["export", "triton", "--artifacts", str(formats_build), "--to", str(out),
                                 "--max-batch-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["dense_b0_fp16", "dense_b0_fp32"]  # one per precision
    for model in out.iterdir():
        cfg = text_format.Parse((model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert cfg.name == model.name and cfg.backend == "onnxruntime" and cfg.max_batch_size == 32
        assert cfg.HasField("dynamic_batching")
        # Triton's directory form: VERSION/model.onnx/ holds model.onnx and its data file.
        onnx_path = model / str(VERSION) / "model.onnx" / "model.onnx"
        proto = onnx.load(str(onnx_path))
        ins = [i for i in proto.graph.input]
        assert [(c.name, list(c.dims), model_config_pb2.DataType.Name(c.data_type)) for c in cfg.input] == \
            [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim[1:]], "TYPE_FP32") for i in ins]
        assert [(c.name, list(c.dims)) for c in cfg.output] == \
            [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim[1:]]) for o in proto.graph.output]
        assert cfg.output[0].label_filename == "labels.txt"
        assert (model / "labels.txt").read_text().splitlines() == LABELS
    # A build without labels or external data: no label file, VERSION/model.onnx a plain file.
    plain = tmp_path / "plain"
    r = CliRunner().invoke(cli, ["export", "triton", "--artifacts", str(small_build), "--to", str(plain)])
    assert r.exit_code == 0, r.output
    cfg = text_format.Parse((plain / "dense_b0_fp32" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert not cfg.output[0].label_filename and not (plain / "dense_b0_fp32" / "labels.txt").exists()
    assert (plain / "dense_b0_fp32" / "1" / "model.onnx").read_bytes() == \
        (small_build / "dense_b0" / "model.onnx").read_bytes()


def test_unknown_precision_and_missing_build_are_bad_input(tmp_path, small_build):
    r = CliRunner().invoke(cli, ["export", "triton", "--artifacts", str(small_build), "--to", str(tmp_path / "t"),
                                 "--precision", "int3"])
    assert r.exit_code == 2 and "int3" in r.output
    r = CliRunner().invoke(cli, ["export", "triton", "--artifacts", str(small_build), "--to", str(tmp_path / "t"),
                                 "--precision", "int8"])
    assert r.exit_code == 2 and "none of the precisions" in r.output
    r = CliRunner().invoke(cli, ["export", "triton", "--artifacts", str(tmp_path / "none"), "--to", str(tmp_path / "t")])
    assert r.exit_code == 2 and json.dumps(str(tmp_path / "none"))[1:-1] in r.output
