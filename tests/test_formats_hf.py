"""A Hugging Face model repository folder per model (issue 24): the Hub's file names, a model card
huggingface_hub itself parses, and a folder that zoo pull verifies when a static server serves it
under ORG/REPO/resolve/COMMIT/ (the Hub's URL layout)."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from click.testing import CliRunner

from zoo.cli import cli

from formats_build import LABELS, LICENSE, VERSION, formats_build  # noqa: F401 - fixtures
from hub_server import MirrorServer, hub_env  # noqa: F401 - the autouse environment fixture

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_folder(formats_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    r = CliRunner().invoke(cli, ["export", "hf", "--artifacts", str(formats_build), "--to", str(out),
                                 "--repo-id", "zoo-org/dense_b0", "--json"])
    assert r.exit_code == 0, r.output
    return out / "dense_b0", dict(json.loads(r.stdout), artifacts=str(formats_build))


def test_the_folder_has_the_hub_names(hf_folder):
    folder, report = hf_folder
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"onnx/model.onnx", "onnx/model.onnx_data", "onnx/model_fp16.onnx", "onnx/model_fp16.onnx_data",
                     "model.safetensors", "config.json", "README.md", "manifest.json",
                     "test_data_set_0/input_0.pb", "test_data_set_0/output_0.pb"}
    assert {r["path"] for r in report["files"]} == names and all(r["status"] == "written" for r in report["files"])
    # The model files point at their Hub-named data files, and load and run from there.
    import numpy as np
    import onnxruntime as ort

    for f in ("model.onnx", "model_fp16.onnx"):
        proto = onnx.load(str(folder / "onnx" / f), load_external_data=False)
        locations = {kv.value for t in proto.graph.initializer for kv in t.external_data if kv.key == "location"}
        assert locations == {f + "_data"}
        s = ort.InferenceSession(str(folder / "onnx" / f), providers=["CPUExecutionProvider"])
        assert s.run(None, {"input": np.zeros((3, 64), np.float32)})[0].shape == (3, 10)
    config = json.loads((folder / "config.json").read_text())
    assert config["input_dim"] == 64 and config["num_classes"] == 10
    assert [config["id2label"][str(i)] for i in range(10)] == LABELS and config["scaling"]["width"] == 1.0
    assert config["onnx"]["files"] == {"fp32": "onnx/model.onnx", "fp16": "onnx/model_fp16.onnx"}
    assert config["zoo"]["version"] == VERSION and config["zoo"]["digest"].startswith("sha256:")
    # Exporting again writes nothing new; a missing build is bad input.
    r = CliRunner().invoke(cli, ["export", "hf", "--artifacts", report["artifacts"], "--to", str(folder.parent),
                                 "--repo-id", "zoo-org/dense_b0", "--json"])
    assert r.exit_code == 0 and {f["status"] for f in json.loads(r.stdout)["files"]} == {"unchanged"}
    r = CliRunner().invoke(cli, ["export", "hf", "--artifacts", str(folder.parent / "none"), "--to", "y"])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_huggingface_hub_parses_the_card(hf_folder):
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    folder, _ = hf_folder
    card = ModelCard.load(folder / "README.md", ignore_metadata_errors=False)
    data = card.data
    assert data.license == LICENSE.lower() and "onnx" in data.tags and data.library_name == "onnx"
    assert data.datasets == ["eval.npz"]
    meta = metadata_load(folder / "README.md")
    assert meta["params"] > 3_000_000 and meta["flops"] > 0 and meta["model_version"] == VERSION
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "dense_b0"
    measured = {(r.metric_name, r.metric_value) for r in results}
    manifest = json.loads((folder / "manifest.json").read_text())["models"][0]
    expected = {(f"top-1 ({a['backend']}, {a['precision']})", round(a["top1"], 6)) for a in manifest["accuracy"]
                if a["backend"] != "torch"}
    assert measured == expected and {p for _, p in [n[:-1].split(", ") for n, _ in measured]} == {"fp32", "fp16"}
    assert all(r.metric_type == "accuracy" and r.task_type == "tabular-classification" for r in results)
    text = card.text
    for needle in ("zoo pull dense_b0 --from https://huggingface.co/zoo-org/dense_b0/resolve/COMMIT/",
                   "examples/node/classify.mjs", "examples/browser/index.html", "examples/c/classify",
                   "## Parity with PyTorch", "## Latency", "## Accuracy"):
        assert needle in text, needle


def test_zoo_pull_from_a_resolve_commit_url(hf_folder, tmp_path):
    folder, _ = hf_folder
    root = tmp_path / "hub"
    shutil.copytree(folder, root / "zoo-org" / "dense_b0" / "resolve" / COMMIT)
    srv = MirrorServer(root).start()
    try:
        source = f"{srv.url}zoo-org/dense_b0/resolve/{COMMIT}/"
        runner = CliRunner()
        r = runner.invoke(cli, ["pull", "dense_b0", "--from", source, "--precision", "fp16", "--with-test-data",
                                "--with-weights", "--cache-dir", str(tmp_path / "cache"), "--json"])
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)[0]
        paths = {f["path"] for f in got["files"]}
        assert {"onnx/model_fp16.onnx", "onnx/model_fp16.onnx_data", "model.safetensors",
                "test_data_set_0/input_0.pb"} <= paths
        assert (tmp_path / "cache" / "models" / "dense_b0" / "onnx" / "model_fp16.onnx_data").is_file()
        # A file changed on the server after the folder was made: refused, exit 1.
        srv.set(f"zoo-org/dense_b0/resolve/{COMMIT}/onnx/model.onnx_data", "tamper", then="tamper")
        r = runner.invoke(cli, ["pull", "dense_b0", "--from", source, "--cache-dir", str(tmp_path / "cache2")])
        assert r.exit_code == 1 and "sha256" in r.output, r.output
    finally:
        srv.close()


def test_a_release_gives_version_digest_and_signature(formats_build, tmp_path):
    """The releases work hands its version, digest and signature in as plain values."""
    from zoo.formats.common import Release
    from zoo.formats.hf import SIGNATURE_FILE, export_hf

    sig = tmp_path / "model.sig"
    sig.write_bytes(b'{"bundle": "from model_signing"}')
    digest = "sha256:" + "ab" * 32
    export_hf(formats_build, tmp_path / "out", releases={"dense_b0": Release(version=7, digest=digest, signature=sig)})
    folder = tmp_path / "out" / "dense_b0"
    config = json.loads((folder / "config.json").read_text())
    assert (config["zoo"]["version"], config["zoo"]["digest"], config["zoo"]["signature"]) == (7, digest, SIGNATURE_FILE)
    assert (folder / SIGNATURE_FILE).read_bytes() == sig.read_bytes()
    assert f"Release version 7, digest `{digest}`" in (folder / "README.md").read_text()


def test_a_folder_exported_from_a_signed_mirror_carries_its_release(formats_build, tmp_path):
    """Exported from a `zoo publish` mirror, the folder names the published version, its digest and
    the OpenSSF signature that `zoo publish --sign-key` wrote, without being handed them."""
    from zoo import hub
    from zoo.formats.hf import SIGNATURE_FILE, export_hf
    from zoo.hub import keygen

    keygen(tmp_path / "zoo.key")
    mirror = tmp_path / "mirror"
    hub.publish(formats_build, mirror, ["dense_b0"], sign_key=tmp_path / "zoo.key", license="Apache-2.0")
    rec = next(e for e in json.loads((mirror / "manifest.json").read_text())["models"] if e["model"] == "dense_b0")["release"]
    export_hf(mirror, tmp_path / "out", ["dense_b0"])
    folder = tmp_path / "out" / "dense_b0"
    config = json.loads((folder / "config.json").read_text())
    assert (config["zoo"]["version"], config["zoo"]["digest"]) == (rec["version"], rec["digest"]) == (1, rec["digest"])
    assert config["zoo"]["signature"] == SIGNATURE_FILE
    assert (folder / SIGNATURE_FILE).read_bytes() == (mirror / "releases" / "dense_b0" / "1" / "model.sig").read_bytes()


def test_a_folder_exported_from_a_signed_mirror_verifies_with_its_root(formats_build, tmp_path, monkeypatch):
    """The folder carries the mirror's TUF metadata, the version's release files and blobs: a pull
    with the publisher's root.json verifies it (from the folder and from resolve/COMMIT/), and
    refuses it with another publisher's root (exit 1, nothing cached)."""
    from zoo import hub
    from zoo.formats.hf import export_hf
    from zoo.hub import keygen

    monkeypatch.delenv("ZOO_TRUST", raising=False)
    for who in ("p", "q"):
        keygen(tmp_path / f"{who}.key")
        hub.publish(formats_build, tmp_path / f"mirror-{who}", ["dense_b0"], sign_key=tmp_path / f"{who}.key")
    mirror = tmp_path / "mirror-p"
    export_hf(mirror, tmp_path / "out", ["dense_b0"])
    folder = tmp_path / "out" / "dense_b0"
    for rel in ("metadata/1.root.json", "metadata/timestamp.json", "releases/dense_b0/1/manifest.json",
                "releases/dense_b0/1/model.sig"):
        assert (folder / rel).read_bytes() == (mirror / rel).read_bytes(), rel
    assert json.loads((folder / "config.json").read_text())["zoo"]["tuf_metadata"] == "metadata/"
    assert "--trust root.json" in (folder / "README.md").read_text()
    root = mirror / "metadata" / "1.root.json"
    root.rename(tmp_path / "root.json")  # the anchor comes from the publisher, not from the folder
    root = tmp_path / "root.json"
    srv_root = tmp_path / "hub"
    shutil.copytree(folder, srv_root / "zoo-org" / "dense_b0" / "resolve" / COMMIT)
    srv = MirrorServer(srv_root).start()
    try:
        runner = CliRunner()
        for i, source in enumerate((str(folder), f"{srv.url}zoo-org/dense_b0/resolve/{COMMIT}/")):
            r = runner.invoke(cli, ["pull", "dense_b0", "--from", source, "--trust", str(root), "--precision", "fp16",
                                    "--cache-dir", str(tmp_path / f"c{i}"), "--json"])
            assert r.exit_code == 0, r.output
            got = json.loads(r.stdout)[0]
            assert (got["trust"], got["version"]) == ("verified", 1)
            view = tmp_path / f"c{i}" / "models" / "dense_b0"
            assert (view / "dense_b0" / "model.fp16.onnx").read_bytes() == \
                (formats_build / "dense_b0" / "model.fp16.onnx").read_bytes()
        r = runner.invoke(cli, ["pull", "dense_b0", "--from", str(folder), "--trust",
                                str(tmp_path / "mirror-q" / "metadata" / "1.root.json"), "--cache-dir",
                                str(tmp_path / "cq")])
        errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
        assert r.exit_code == 1 and len(errors) == 1 and "Traceback" not in r.output, r.output
        assert not (tmp_path / "cq" / "models" / "dense_b0").exists()
        # Without a root it is still the plain Hub-named folder.
        r = runner.invoke(cli, ["pull", "dense_b0", "--from", str(folder), "--cache-dir", str(tmp_path / "cp"),
                                "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)[0]["trust"] == "unverified", r.output
        assert (tmp_path / "cp" / "models" / "dense_b0" / "onnx" / "model.onnx").is_file()
    finally:
        srv.close()
