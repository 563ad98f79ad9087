"""ONNX's standard fields in every model file (issue 24): domain, model_version, doc_string,
model_author, model_license, labels; reproducible; shown by zoo info; no license unless given."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.errors import InputError
from zoo.modelinfo import ONNX_DOMAIN, ModelInfo, read_labels

from formats_build import AUTHOR, LABELS, LICENSE, VERSION, formats_build  # noqa: F401 - the fixture


def _meta(proto):
    return {p.key: p.value for p in proto.metadata_props}


def test_every_precision_carries_the_standard_fields(formats_build):
    import onnxruntime as ort

    from zoo.exporters.int4 import quantize_int4
    from zoo.exporters.int8 import quantize_int8
    from zoo.onnxio import inline

    d = formats_build / "dense_b0"
    fp32 = inline((d / "model.onnx").read_bytes(), (d / "model.onnx.data").read_bytes())
    files = {"fp32": fp32,
             "fp16": inline((d / "model.fp16.onnx").read_bytes(), (d / "model.fp16.onnx.data").read_bytes()),
             "int8": quantize_int8(fp32), "int4": quantize_int4(fp32)}
    for precision, data in files.items():
        proto = onnx.load_from_string(data)
        assert proto.domain == ONNX_DOMAIN and proto.model_version == VERSION, precision
        assert proto.doc_string == (f"dense_efficientnet dense_b0 (paper flavor), {precision}, "
                                    f"input [batch, 64] float32, 10 classes")
        meta = _meta(proto)
        assert meta["model_author"] == AUTHOR and meta["model_license"] == LICENSE
        assert json.loads(meta["labels"]) == LABELS
        # ONNX Runtime reads the same fields through its standard API.
        m = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta()
        assert (m.domain, m.version, m.description) == (ONNX_DOMAIN, VERSION, proto.doc_string)
        assert m.custom_metadata_map["model_license"] == LICENSE
    # Reproducible: the variant made again is the same bytes.
    assert quantize_int8(fp32) == files["int8"]


def test_no_license_or_author_unless_given(small_build):
    proto = onnx.load(str(small_build / "dense_b0" / "model.onnx"))
    meta = _meta(proto)
    assert proto.domain == ONNX_DOMAIN and proto.model_version == 1
    assert not {"model_license", "model_author", "labels"} & meta.keys()


def test_zoo_info_shows_the_fields(formats_build, monkeypatch):
    # zoo info's onnx.checker looks for external data in the working folder (inspect.py, not this issue's).
    monkeypatch.chdir(formats_build / "dense_b0")
    r = CliRunner().invoke(cli, ["info", str(formats_build / "dense_b0" / "model.fp16.onnx"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert (info["domain"], info["model_version"]) == (ONNX_DOMAIN, VERSION)
    assert info["doc_string"].startswith("dense_efficientnet dense_b0") and "fp16" in info["doc_string"]
    assert info["metadata"]["model_license"] == LICENSE
    r = CliRunner().invoke(cli, ["info", str(formats_build / "dense_b0" / "model.onnx")])
    assert f"domain     {ONNX_DOMAIN}   model_version {VERSION}" in r.output and "model_author = " + AUTHOR in r.output


def test_the_manifest_records_what_check_rebuilds_with(formats_build):
    """--check against a manifest rebuilds with the version, author, license and labels it records."""
    from zoo.builder.artifact import ModelRequest

    entry = json.loads((formats_build / "manifest.json").read_text())["models"][0]
    assert entry["onnx_metadata"] == {"model_version": VERSION, "model_author": AUTHOR, "model_license": LICENSE,
                                      "labels": LABELS}
    assert ModelRequest.from_entry(entry).info == ModelInfo(VERSION, AUTHOR, LICENSE, tuple(LABELS))


@pytest.mark.parametrize("args, message", [
    (["--license", "Apache 2.0; rm"], "not an SPDX license"),
    (["--model-version", "0"], "0"),
    (["--author", ""], "author must be one line"),
])
def test_bad_release_metadata_is_bad_input(args, message, tmp_path):
    r = CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--no-verify", "--no-bench",
                                 "--artifacts", str(tmp_path / "a"), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "a").exists()


def test_labels_files(tmp_path):
    (tmp_path / "l.txt").write_text("cat\ndog\n")
    assert read_labels(tmp_path / "l.txt") == ("cat", "dog")
    (tmp_path / "l.json").write_text('["a", "b", "c"]')
    assert read_labels(tmp_path / "l.json") == ("a", "b", "c")
    for bad in ('["a", 1]', "", "[]", "a\n\nb", '["a\\nb"]'):
        (tmp_path / "bad").write_text(bad)
        with pytest.raises(InputError):
            read_labels(tmp_path / "bad")
    with pytest.raises(InputError, match="2 labels given for 10 classes"):
        ModelInfo(labels=("a", "b")).check_classes(10)
    r = CliRunner().invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--labels", str(tmp_path / "l.txt"),
                                 "--artifacts", str(tmp_path / "a")])
    assert r.exit_code == 2 and "2 labels given for 10 classes" in r.output
