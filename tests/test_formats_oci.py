"""Models as OCI artifacts in a real registry (issue 24): Debian's docker-registry (the CNCF
Distribution registry) on 127.0.0.1; push, pull by tag and by digest, a tampered blob refused,
and the oras client pulls the same bytes (interop)."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.formats.names import MODELPACK_ARTIFACT, MODELPACK_CONFIG

from formats_build import LICENSE, VERSION, formats_build  # noqa: F401 - fixtures
from hub_server import hub_env  # noqa: F401 - the autouse environment fixture
from oci_registry import Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def pushed(registry, formats_build):
    r = CliRunner().invoke(cli, ["publish", "--artifacts", str(formats_build), "--to", f"oci://{registry.host}/zoo",
                                 "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["models"][0]


def _oci_manifest(registry, ref: str) -> tuple[bytes, dict]:
    import urllib.request

    req = urllib.request.Request(f"http://{registry.host}/v2/zoo/dense_b0/manifests/{ref}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return raw, json.loads(raw)


def test_push_is_a_modelpack_artifact_tagged_with_the_version(registry, pushed, formats_build):
    assert pushed["version"] == VERSION and pushed["tag"] == f"oci://{registry.host}/zoo/dense_b0:{VERSION}"
    raw, manifest = _oci_manifest(registry, str(VERSION))
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["digest"]
    assert _oci_manifest(registry, "latest")[0] == raw
    assert manifest["artifactType"] == MODELPACK_ARTIFACT and manifest["config"]["mediaType"] == MODELPACK_CONFIG
    entry = json.loads((formats_build / "manifest.json").read_text())["models"][0]
    titles = {l["annotations"]["org.opencontainers.image.title"]: l for l in manifest["layers"]}
    assert set(titles) == {f["path"] for f in entry["files"]} | {"manifest.json"}  # one layer per file
    for f in entry["files"]:
        assert titles[f["path"]]["digest"] == f"sha256:{f['sha256']}" and titles[f["path"]]["size"] == f["bytes"]
    assert titles["dense_b0/model.onnx"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    ann = manifest["annotations"]
    assert ann["org.opencontainers.image.version"] == str(VERSION) and ann["org.opencontainers.image.licenses"] == LICENSE
    assert ann["org.zoo.model_sha"] == entry["metadata"]["model_sha"]
    config = json.loads(registry.blob_path(manifest["config"]["digest"]).read_bytes())
    assert config["config"]["format"] == "onnx" and config["descriptor"]["licenses"] == [LICENSE]
    # Publishing the same bytes again gives the same digest.
    r = CliRunner().invoke(cli, ["publish", "--artifacts", str(formats_build), "--to", f"oci://{registry.host}/zoo",
                                 "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["models"][0]["digest"] == pushed["digest"]


@pytest.mark.parametrize("how", ["tag", "digest"])
def test_pull_by_tag_and_by_digest(registry, pushed, formats_build, tmp_path, how):
    source = pushed["tag"] if how == "tag" else pushed["reference"]
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", source, "--precision", "fp16", "--with-test-data",
                                 "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)[0]
    assert got["source"] == source and got["status"] == "downloaded"
    for f in got["files"]:
        assert (tmp_path / "cache" / "models" / "dense_b0" / f["path"]).read_bytes() == \
            (formats_build / f["path"]).read_bytes()
    assert {f["path"] for f in got["files"]} >= {"dense_b0/model.fp16.onnx", "dense_b0/model.fp16.onnx.data"}


def test_a_wrong_digest_and_a_tampered_blob_are_refused(registry, pushed, tmp_path):
    other = "sha256:" + "0" * 64
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", f"oci://{registry.host}/zoo/dense_b0@{other}",
                                 "--cache-dir", str(tmp_path / "c0")])
    assert r.exit_code in (1, 2) and r.output.startswith("Error: zoo pull:") and "Traceback" not in r.output
    _, manifest = _oci_manifest(registry, str(VERSION))
    layer = next(l for l in manifest["layers"]
                 if l["annotations"]["org.opencontainers.image.title"] == "dense_b0/model.onnx.data")
    blob = registry.blob_path(layer["digest"])
    original = blob.read_bytes()
    try:
        tampered = bytearray(original)
        tampered[len(tampered) // 2] ^= 0xFF
        blob.write_bytes(bytes(tampered))
        r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", pushed["reference"],
                                     "--cache-dir", str(tmp_path / "c1")])
        assert r.exit_code == 1 and "does not match its layer digest" in r.output, r.output
        assert not (tmp_path / "c1" / "models" / "dense_b0").exists()
    finally:
        blob.write_bytes(original)


def test_the_oras_client_pulls_the_same_bytes(registry, pushed, formats_build, tmp_path):
    """Interop: oras's own pull writes the model's files by their titles: a zoo mirror."""
    import oras.client

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    files = client.pull(target=f"{registry.host}/zoo/dense_b0:{VERSION}", outdir=str(tmp_path / "o"))
    entry = json.loads((formats_build / "manifest.json").read_text())["models"][0]
    assert len(files) == len(entry["files"]) + 1
    for f in entry["files"]:
        assert hashlib.sha256((tmp_path / "o" / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", str(tmp_path / "o"), "--cache-dir",
                                 str(tmp_path / "c")])
    assert r.exit_code == 0, r.output


def test_bad_references_and_unreachable_registries(tmp_path, formats_build):
    runner = CliRunner()
    for bad in ("oci://", "oci://host", "oci://user:pw@host/zoo", "oci://host/Zoo", "oci://host/zoo@sha256:12"):
        r = runner.invoke(cli, ["pull", "dense_b0", "--from", bad, "--cache-dir", str(tmp_path / "c")])
        assert r.exit_code == 2 and "pw" not in r.output, (bad, r.output)
    r = runner.invoke(cli, ["publish", "--artifacts", str(formats_build), "--to", "oci://127.0.0.1:9/zoo"])
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 1 and len(errors) == 1 and "cannot connect" in errors[0], r.output


def test_a_release_version_and_signature_become_tag_and_layer(registry, formats_build, tmp_path):
    from zoo.formats.common import Release
    from zoo.formats.oci import SIGNATURE_MEDIA, push

    sig = tmp_path / "model.sig"
    sig.write_bytes(b'{"bundle": "from model_signing"}')
    row = push(formats_build, f"oci://{registry.host}/rel", releases={"dense_b0": Release(version=7, signature=sig)})[0]
    assert row["tag"].endswith("/rel/dense_b0:7")
    import urllib.request

    req = urllib.request.Request(f"http://{registry.host}/v2/rel/dense_b0/manifests/7",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        manifest = json.loads(resp.read())
    layer = next(l for l in manifest["layers"] if l["mediaType"] == SIGNATURE_MEDIA)
    assert registry.blob_path(layer["digest"]).read_bytes() == sig.read_bytes()
    assert manifest["annotations"]["org.opencontainers.image.version"] == "7"
