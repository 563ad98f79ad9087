"""Models as OCI artifacts in a real registry (issues 24 and 31): Debian's docker-registry (the CNCF
Distribution registry 2.8, which has no referrers API) on 127.0.0.1; push, pull by tag and by
digest, a tampered blob refused, and the oras client pulls the same bytes (interop). Published from
a signed mirror, each model has a release referrer (TUF metadata and release files) found by the
fallback tag here, and by the referrers API through :class:`oci_registry.ReferrersRegistry`; a
trusted pull from ``oci://HOST/REPO`` (the URL ``zoo publish --to`` took) verifies as on a mirror."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.formats.names import MODELPACK_ARTIFACT, MODELPACK_CONFIG

from formats_build import LICENSE, VERSION, formats_build  # noqa: F401 - fixtures
from hub_server import hub_env  # noqa: F401 - the autouse environment fixture
from oci_registry import ReferrersRegistry, Registry


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


# --------------------------------------------------------------------------------------------------
# Releases on OCI: the same URL both ways, TUF metadata as referrers (issue 31)


def _one_line_error(result) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _get(registry_host: str, path: str, accept: str = "application/vnd.oci.image.index.v1+json"):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://{registry_host}{path}", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def _publish_oci(artifacts, to, env=None) -> list[dict]:
    r = CliRunner().invoke(cli, ["publish", "--artifacts", str(artifacts), "--to", to, "--json"], env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["models"]


@pytest.fixture(scope="module")
def signed(registry, formats_build, tmp_path_factory):
    """A signed mirror (key p) at version 1, then 2 (other test data bytes), each pushed to
    oci://HOST/signed; another publisher's (key q) release of the same model at oci://HOST/other."""
    import shutil

    from zoo import hub
    from zoo.hub import keygen

    d = tmp_path_factory.mktemp("signed-oci")
    keygen(d / "p.key")
    keygen(d / "q.key")
    mirror = d / "mirror"
    hub.publish(formats_build, mirror, sign_key=d / "p.key", license="Apache-2.0")
    to = f"oci://{registry.host}/signed"
    v1 = _publish_oci(mirror, to)[0]
    v2build = d / "v2build"
    shutil.copytree(formats_build, v2build)
    manifest = json.loads((v2build / "manifest.json").read_text())
    rec = next(f for f in manifest["models"][0]["files"] if f["path"].endswith("input_0.pb"))
    data = bytearray((v2build / rec["path"]).read_bytes())
    data[-1] ^= 0x01
    (v2build / rec["path"]).write_bytes(bytes(data))
    rec.update(sha256=hashlib.sha256(data).hexdigest())
    (v2build / "manifest.json").write_text(json.dumps(manifest))
    hub.publish(v2build, mirror, sign_key=d / "p.key", license="Apache-2.0")
    v2 = _publish_oci(mirror, to)[0]
    hub.publish(formats_build, d / "other", sign_key=d / "q.key", license="Apache-2.0")
    _publish_oci(d / "other", f"oci://{registry.host}/other")
    return {"mirror": mirror, "root": mirror / "metadata" / "1.root.json", "to": to, "v1": v1, "v2": v2, "dir": d}


def test_a_trusted_pull_from_the_publish_url_verifies_through_the_fallback_tag(registry, signed, tmp_path,
                                                                                monkeypatch):
    monkeypatch.delenv("ZOO_TRUST", raising=False)
    v1, v2 = signed["v1"], signed["v2"]
    assert (v1["version"], v2["version"]) == (1, 2) and v1["release"]["via"] == v2["release"]["via"] == "tag"
    # Distribution 2.8 has no referrers API; the fallback tag holds an image index of the release.
    assert _get(registry.host, f"/v2/signed/dense_b0/referrers/{v2['digest']}")[0] == 404
    status, raw = _get(registry.host, f"/v2/signed/dense_b0/manifests/sha256-{v2['digest'][7:]}")
    index = json.loads(raw)
    assert status == 200 and [m["digest"] for m in index["manifests"]] == [v2["release"]["digest"]]
    assert index["manifests"][0]["artifactType"] == "application/vnd.zoo.release.v1+json"
    mirror = signed["mirror"]
    for spec, version in (("dense_b0", 2), ("dense_b0@1", 1)):
        r = CliRunner().invoke(cli, ["pull", spec, "--from", signed["to"], "--trust", str(signed["root"]),
                                     "--with-test-data", "--cache-dir", str(tmp_path / "c"), "--json"])
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)[0]
        assert (got["trust"], got["version"]) == ("verified", version), got
    got_input = (tmp_path / "c" / "models" / "dense_b0" / "dense_b0" / "test_data_set_0" / "input_0.pb")
    assert got_input.exists()
    r = CliRunner().invoke(cli, ["pull", "dense_b0@3", "--from", signed["to"], "--trust", str(signed["root"]),
                                 "--cache-dir", str(tmp_path / "c3")])
    assert r.exit_code == 2 and "signed/dense_b0:3 does not exist (HTTP 404)" in _one_line_error(r), r.output
    # Trust bound to the registry and repository: another spelling of it needs the signature too.
    r = CliRunner().invoke(cli, ["trust", "add", signed["to"], str(signed["root"])])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", signed["to"].replace("oci://", "OCI://") + "/",
                                 "--cache-dir", str(tmp_path / "c4"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["trust"] == "verified", r.output
    # The oras client reads the release artifact as files named by their mirror paths.
    import oras.client

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.pull(target=f"{registry.host}/signed/dense_b0@{v2['release']['digest']}", outdir=str(tmp_path / "o"))
    for rel in ("metadata/1.root.json", "metadata/timestamp.json", "releases/dense_b0/2/manifest.json",
                "releases/dense_b0/2/model.sig"):
        assert (tmp_path / "o" / rel).read_bytes() == (mirror / rel).read_bytes(), rel


def test_another_publishers_release_is_refused(registry, signed, tmp_path):
    r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", f"oci://{registry.host}/other", "--trust",
                                 str(signed["root"]), "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 1, r.output
    assert "refusing" in _one_line_error(r)
    assert not (tmp_path / "c" / "models" / "dense_b0").exists()


@pytest.mark.parametrize("what", ["model layer", "targets metadata"])
def test_a_tampered_layer_is_refused_on_a_trusted_pull(registry, signed, tmp_path, what):
    _, manifest = _oci_manifest(registry, "latest")  # zoo/dense_b0: the same blobs as signed/dense_b0
    if what == "model layer":
        digest = next(l["digest"] for l in manifest["layers"]
                      if l["annotations"]["org.opencontainers.image.title"] == "dense_b0/model.onnx.data")
    else:
        status, raw = _get(registry.host, f"/v2/signed/dense_b0/manifests/{signed['v2']['release']['digest']}",
                           "application/vnd.oci.image.manifest.v1+json")
        digest = next(l["digest"] for l in json.loads(raw)["layers"]
                      if l["annotations"]["org.opencontainers.image.title"].endswith(".targets.json"))
    blob = registry.blob_path(digest)
    original = blob.read_bytes()
    try:
        tampered = bytearray(original)
        tampered[len(tampered) // 2] ^= 0x01
        blob.write_bytes(bytes(tampered))
        r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", signed["to"], "--trust", str(signed["root"]),
                                     "--cache-dir", str(tmp_path / "c")])
        assert r.exit_code == 1, r.output
        assert "does not match its layer digest" in _one_line_error(r)
        assert not (tmp_path / "c" / "models" / "dense_b0").exists()
    finally:
        blob.write_bytes(original)


def test_versions_by_tag_and_what_is_missing_without_trust(registry, pushed, tmp_path):
    """An unsigned push: NAME@V is the tag V; a missing tag or repository is named (exit 2); a
    namespace cannot be listed (exit 2: name the models)."""
    to = f"oci://{registry.host}/zoo"
    runner = CliRunner()
    r = runner.invoke(cli, ["pull", f"dense_b0@{VERSION}", "--from", to, "--cache-dir", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["version"] == VERSION, r.output
    r = runner.invoke(cli, ["pull", "dense_b0@9", "--from", to, "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2, r.output
    assert f"oci://{registry.host}/zoo/dense_b0:9 does not exist (HTTP 404): published versions are tags of " \
           "zoo/dense_b0" in _one_line_error(r)
    r = runner.invoke(cli, ["pull", "dense_b7", "--from", to, "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2 and "dense_b7:latest does not exist" in _one_line_error(r), r.output
    for args in (["pull", "--all", "--from", to], ["models", "--from", to]):
        r = runner.invoke(cli, [*args, "--cache-dir", str(tmp_path / "c")])
        assert r.exit_code == 2 and "name the models" in _one_line_error(r), (args, r.output)
    r = runner.invoke(cli, ["pull", "dense_b0@sha256:" + "0" * 64, "--from", to, "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 1 and "not sha256:0000" in _one_line_error(r), r.output


def test_models_and_lock_on_oci(registry, signed, tmp_path):
    runner = CliRunner()
    trust = ["--trust", str(signed["root"])]
    r = runner.invoke(cli, ["models", "--from", f"{signed['to']}/dense_b0", *trust, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [v["version"] for v in rows[0]["versions"]] == [1, 2] and rows[0]["trust"] == "verified"
    for args in (["models", "--from", signed["to"], *trust], ["pull", "--all", "--from", signed["to"], *trust]):
        r = runner.invoke(cli, [*args, "--cache-dir", str(tmp_path / "c")])
        assert r.exit_code == 2 and "name the models" in _one_line_error(r), (args, r.output)
    lock = tmp_path / "zoo.lock"
    r = runner.invoke(cli, ["lock", "dense_b0@1", "--from", signed["to"], *trust, "--out", str(lock)])
    assert r.exit_code == 0, r.output
    assert json.loads(lock.read_text())["source"] == signed["to"] + "/"
    r = runner.invoke(cli, ["pull", "--lock", str(lock), *trust, "--cache-dir", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)[0]
    assert (got["version"], got["trust"]) == (1, "verified")


@pytest.mark.parametrize("mode", ["api", "forced tag"])
def test_a_registry_with_the_referrers_api(registry, signed, tmp_path, monkeypatch, mode):
    proxy = ReferrersRegistry(registry).start()
    try:
        env = {"ZOO_OCI_REFERRERS": "tag"} if mode == "forced tag" else {}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        to = f"oci://{proxy.host}/api"
        row = _publish_oci(signed["mirror"], to)[0]
        tag_status = _get(registry.host, f"/v2/api/dense_b0/manifests/sha256-{row['digest'][7:]}")[0]
        if mode == "api":
            assert row["release"]["via"] == "referrers" and tag_status == 404
        else:
            assert row["release"]["via"] == "tag" and tag_status == 200
        calls = proxy.api_calls
        r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", to, "--trust", str(signed["root"]),
                                     "--cache-dir", str(tmp_path / "c"), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)[0]["trust"] == "verified"
        assert (proxy.api_calls > calls) == (mode == "api")
    finally:
        proxy.stop()


def test_a_silent_registry_ends_at_the_pulls_deadline(tmp_path, monkeypatch):
    """Every request of an OCI pull shares the command's ZOO_DEADLINE (a watchdog closes the
    connection): a registry that accepts and never answers costs the deadline, not a timeout per
    request or per candidate repository."""
    import socket
    import threading
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("ZOO_DEADLINE", "1.5")
    try:
        t0 = time.monotonic()
        r = CliRunner().invoke(cli, ["pull", "dense_b0", "--from", f"oci://127.0.0.1:{srv.getsockname()[1]}/zoo",
                                     "--cache-dir", str(tmp_path / "c")])
        took = time.monotonic() - t0
    finally:
        srv.close()
        for c in held:
            c.close()
    assert r.exit_code == 1 and "deadline of 1.5 s" in _one_line_error(r), r.output
    assert took < 4.5, took
