"""Releases a consumer can pin and trust: versions, lockfiles, signatures, freshness (issue 22).

Real mirrors written by ``zoo publish``, served by a real HTTP server on 127.0.0.1; real keys;
the upstream ``model_signing`` command line as the independent check. The "retrained" dense_b0 is
the session's small build with its weights changed (one initializer scaled, the manifest's sizes
and sha256 recomputed): other weights, other bytes, at no second build's cost.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import MODEL, MODEL_PATH, TEST_IN, TEST_OUT, built, hub_env, serving, snapshot  # noqa: F401

from zoo import hub
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.hub import release, signing


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture(autouse=True)
def no_trust_settings(monkeypatch, tmp_path):
    for var in ("ZOO_TRUST", "ZOO_CONFIG", "XDG_CONFIG_HOME", "ZOO_PUBLISHER"):
        monkeypatch.delenv(var, raising=False)


_S: dict = {}


@pytest.fixture(scope="session")
def retrained(built, tmp_path_factory) -> Path:
    """The small build with other weights (what a retrain publishes): same files, other bytes."""
    if "retrained" not in _S:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        out = tmp_path_factory.mktemp("retrained") / "build"
        shutil.copytree(built, out)
        proto = onnx.load(out / MODEL_PATH)
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
        data = proto.SerializeToString()
        (out / MODEL_PATH).write_bytes(data)
        m = mf.load(out)
        e = m["models"][0]
        for f in e["files"]:
            if f["path"] == MODEL_PATH:
                f.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        e["metadata"].update(model_bytes=len(data), model_sha=hashlib.sha256(data).hexdigest())
        mf.save(out / "manifest.json", m)
        _S["retrained"] = out
    return _S["retrained"]


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict:
    if "keys" not in _S:
        d = tmp_path_factory.mktemp("keys")
        _S["keys"] = {"a": hub.keygen(d / "a.key"), "b": hub.keygen(d / "b.key")}
    return _S["keys"]


@pytest.fixture(scope="session")
def signed_pair(built, retrained, keys, tmp_path_factory) -> tuple[Path, Path]:
    """(the signed mirror after version 1, the same mirror after version 2). Read only."""
    if "signed" not in _S:
        base = tmp_path_factory.mktemp("signed")
        hub.publish(built, base / "v1", sign_key=keys["a"]["private_key"], license="Apache-2.0")
        shutil.copytree(base / "v1", base / "v2")
        hub.publish(retrained, base / "v2", sign_key=keys["a"]["private_key"], license="Apache-2.0")
        _S["signed"] = (base / "v1", base / "v2")
    return _S["signed"]


def model_bytes(view: Path) -> bytes:
    return (view / MODEL_PATH).read_bytes()


def pull_json(*args) -> list[dict]:
    res = run("pull", *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------------
# 1-2. Versions and lockfiles


def test_versions_pins_and_a_lockfile_pulled_from_a_second_mirror(built, retrained, tmp_path):
    mirror, cache, lockf = tmp_path / "mirror", tmp_path / "cache", tmp_path / "zoo.lock"
    v1_bytes = (built / MODEL_PATH).read_bytes()
    assert run("publish", "--artifacts", built, "--to", mirror, "--license", "MIT").exit_code == 0
    with serving(mirror) as srv:
        res = run("lock", MODEL, "--from", srv.url, "--out", lockf, "--cache-dir", cache, "--json")
        assert res.exit_code == 0, res.output
    lock = json.loads(lockf.read_text())
    assert lock["models"][MODEL]["version"] == 1 and lock["source"] == srv.url
    assert {f["path"] for f in lock["models"][MODEL]["files"]} == {MODEL_PATH, TEST_IN, TEST_OUT}

    res = run("publish", "--artifacts", retrained, "--to", mirror, "--license", "MIT", "--json")
    assert res.exit_code == 0, res.output
    assert {r["version"] for r in json.loads(res.stdout)["files"] if r["role"] != "manifest"} == {2}
    before = snapshot(mirror)
    for art in (retrained, built):  # the same bytes again (the latest, or an older version): a no-op
        assert run("publish", "--artifacts", art, "--to", mirror, "--license", "MIT").exit_code == 0
        assert snapshot(mirror) == before
    v1_blob = mirror / release.blob_path(hashlib.sha256(v1_bytes).hexdigest())
    assert v1_blob.read_bytes() == v1_bytes  # published files stay, by content

    second = tmp_path / "second"
    shutil.copytree(mirror, second)
    with serving(mirror) as srv, serving(second) as srv2:
        models = json.loads(run("models", "--from", srv.url, "--cache-dir", cache, "--json").stdout)
        assert [v["version"] for v in models[0]["versions"]] == [1, 2]
        digest1 = models[0]["versions"][0]["digest"]
        assert digest1 == lock["models"][MODEL]["digest"]

        latest = pull_json(MODEL, "--from", srv.url, "--cache-dir", cache)[0]
        assert model_bytes(Path(latest["view"])) == (retrained / MODEL_PATH).read_bytes()
        old = pull_json(f"{MODEL}@1", "--from", srv.url, "--cache-dir", cache)[0]
        assert model_bytes(Path(old["view"])) == v1_bytes  # byte for byte
        by_digest = pull_json(f"{MODEL}@{digest1}", "--from", srv.url, "--cache-dir", tmp_path / "c2")[0]
        assert model_bytes(Path(by_digest["view"])) == v1_bytes
        assert srv.count(MODEL_PATH) == 1  # pins fetch by content, never the mutable latest path

        n = srv.count()
        locked = pull_json("--lock", lockf, "--from", srv2.url, "--cache-dir", tmp_path / "c3")[0]
        assert model_bytes(Path(locked["view"])) == v1_bytes and srv.count() == n  # the copy served it
        assert hub.load(MODEL, lock=lockf, source=srv2.url, cache_dir=tmp_path / "c3").read_bytes() == v1_bytes
        sess = hub.session(MODEL, source=srv2.url, lock=lockf, cache_dir=tmp_path / "c3")
        assert sess.get_inputs()[0].shape[1] == 64

        res = run("pull", f"{MODEL}@3", "--from", srv.url, "--cache-dir", cache)
        assert res.exit_code == 2 and "versions: 1, 2" in one_line_error(res)

    only_v2 = tmp_path / "only-v2"
    assert run("publish", "--artifacts", retrained, "--to", only_v2).exit_code == 0
    with serving(only_v2) as srv3:
        before = snapshot(tmp_path / "c4")
        res = run("pull", "--lock", lockf, "--from", srv3.url, "--cache-dir", tmp_path / "c4")
        assert res.exit_code != 0 and MODEL in one_line_error(res)
        assert snapshot(tmp_path / "c4") == before


def test_release_metadata_is_recorded_and_checked(built, tmp_path, monkeypatch):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    monkeypatch.setenv("ZOO_PUBLISHER", "Ada <ada@example.org>")
    res = run("publish", "--artifacts", built, "--to", tmp_path / "m", "--license", "Apache-2.0", "--labels", labels)
    assert res.exit_code == 0, res.output
    rel = mf.load(tmp_path / "m")["models"][0]["release"]
    assert rel["license"] == "Apache-2.0" and rel["labels"][3] == "digit 3" and rel["published_by"].startswith("Ada")
    assert release.parse_time(rel["published_at"], "t") <= release.now() and rel["signed_by"] is None
    assert rel["digest"] == release.version_digest(mf.load(built)["models"][0]["files"])

    res = run("publish", "--artifacts", built, "--to", tmp_path / "n")
    assert res.exit_code == 0 and "no --license" in res.stderr
    assert mf.load(tmp_path / "n")["models"][0]["release"]["license"] is None  # stated as none, not defaulted
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\n")
    for args in (["--license", "not a license!"], ["--labels", bad]):
        res = run("publish", "--artifacts", built, "--to", tmp_path / "o", *args)
        assert res.exit_code == 2, res.output
        one_line_error(res)
    assert not (tmp_path / "o" / "index.json").exists()


# --------------------------------------------------------------------------------------------------
# 3. Signatures


def test_a_signed_version_verifies_here_and_with_the_upstream_model_signing_cli(signed_pair, keys, tmp_path):
    _, v2 = signed_pair
    cache = tmp_path / "cache"
    with serving(v2) as srv:
        res = pull_json(f"{MODEL}@1", "--from", srv.url, "--trust", keys["a"]["public_key"], "--with-test-data",
                        "--cache-dir", cache)[0]
    view = Path(res["view"]) / MODEL
    sig = v2 / release.version_dir(MODEL, 1) / signing.SIGNATURE_NAME

    def upstream(folder):
        return subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", "--signature", str(sig),
                               "--public_key", keys["a"]["public_key"], str(folder)], capture_output=True, text=True)

    ok = upstream(view)
    assert ok.returncode == 0 and "Verification succeeded" in ok.stdout + ok.stderr
    changed = tmp_path / "changed" / MODEL
    shutil.copytree(view, changed)
    data = bytearray((changed / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (changed / "model.onnx").write_bytes(bytes(data))
    bad = upstream(changed)
    assert bad.returncode != 0 and "mismatch" in (bad.stdout + bad.stderr).lower()
    rel = mf.load(Path(res["view"]))["models"][0]["release"]
    assert rel["signed_by"] == keys["a"]["key_id"]


def _compromise(mirror: Path, payload: bytes) -> None:
    """What someone who can write the mirror (but holds no key) does: model.onnx replaced everywhere,
    every manifest and the index's hashes recomputed to match."""
    sha = hashlib.sha256(payload).hexdigest()
    (mirror / MODEL_PATH).write_bytes(payload)
    blob = mirror / release.blob_path(sha)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(payload)
    index = json.loads((mirror / "index.json").read_text())
    rec = index["signed"]["models"][MODEL][-1]
    paths = [mirror / "manifest.json", mirror / rec["manifest"]]
    for p in paths:
        m = mf.load(p)
        for f in m["models"][0]["files"]:
            if f["path"] == MODEL_PATH:
                f.update(bytes=len(payload), sha256=sha)
        m["models"][0]["metadata"].update(model_bytes=len(payload), model_sha=sha)
        digest = release.version_digest(m["models"][0]["files"])
        m["models"][0]["release"]["digest"] = digest
        mf.save(p, m)
    rec.update(digest=digest, manifest_sha256=hashlib.sha256((mirror / rec["manifest"]).read_bytes()).hexdigest())
    (mirror / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("attack", ["compromised", "other_key", "truncated_sig", "swapped_sig", "unsigned"])
def test_trust_refuses_what_the_key_did_not_sign_and_leaves_the_cache_alone(attack, signed_pair, built, keys,
                                                                            tmp_path):
    _, v2 = signed_pair
    mirror = tmp_path / "mirror"
    if attack == "other_key":
        hub.publish(built, mirror, sign_key=keys["b"]["private_key"])
    elif attack == "unsigned":
        hub.publish(built, mirror)
    else:
        shutil.copytree(v2, mirror)
    sig1, sig2 = (mirror / release.version_dir(MODEL, v) / signing.SIGNATURE_NAME for v in (1, 2))
    evil = (built / MODEL_PATH).read_bytes()[:-8] + b"backdoor"
    if attack == "compromised":
        _compromise(mirror, evil)
    elif attack == "truncated_sig":
        sig2.write_bytes(sig2.read_bytes()[:200])
    elif attack == "swapped_sig":
        a, b = sig1.read_bytes(), sig2.read_bytes()
        sig1.write_bytes(b)
        sig2.write_bytes(a)
    cache = tmp_path / "cache"
    with serving(mirror) as srv:
        if attack == "compromised":  # without trust the recomputed manifest is all there is: accepted
            plain = pull_json(MODEL, "--from", srv.url, "--cache-dir", tmp_path / "naive")[0]
            assert model_bytes(Path(plain["view"])) == evil
        before, n = snapshot(cache), srv.count()
        res = run("pull", MODEL, "--from", srv.url, "--trust", keys["a"]["public_key"], "--cache-dir", cache)
        assert res.exit_code == 1, res.output
        line = one_line_error(res)
        assert snapshot(cache) == before  # nothing added to the cache
        assert not any(p == MODEL_PATH or p.startswith("blobs/") for p in srv.log[n:])  # not even downloaded
    assert any(w in line for w in ("signature", "signed", "sha256")), line
    if attack in ("truncated_sig", "swapped_sig"):  # the model signature check refuses it by itself too
        entry = mf.load(mirror / release.version_dir(MODEL, 2))["models"][0]
        with pytest.raises(signing.SignatureError):
            signing.verify_version(entry, sig2.read_bytes(), keys["a"]["public_key"], "sig")


def test_trust_settings_persist_per_source_and_from_the_environment(signed_pair, built, keys, tmp_path, monkeypatch):
    _, v2 = signed_pair
    unsigned = tmp_path / "unsigned"
    hub.publish(built, unsigned)
    res = run("trust", "add", unsigned, keys["a"]["public_key"], "--json")
    assert res.exit_code == 0, res.output
    assert [r["source"] for r in json.loads(run("trust", "list", "--json").stdout)] == [str(unsigned)]
    res = run("pull", MODEL, "--from", unsigned, "--cache-dir", tmp_path / "c")
    assert res.exit_code == 1 and "not signed" in one_line_error(res)
    assert run("trust", "remove", unsigned).exit_code == 0
    assert run("pull", MODEL, "--from", unsigned, "--cache-dir", tmp_path / "c").exit_code == 0
    monkeypatch.setenv("ZOO_TRUST", keys["b"]["public_key"])
    res = run("pull", MODEL, "--from", v2, "--cache-dir", tmp_path / "c")
    assert res.exit_code == 1 and "another key" in one_line_error(res)
    monkeypatch.setenv("ZOO_TRUST", keys["a"]["public_key"])
    assert run("pull", MODEL, "--from", v2, "--cache-dir", tmp_path / "c").exit_code == 0
    res = run("publish", "--artifacts", built, "--to", tmp_path / "never")  # fresh: fine unsigned
    assert res.exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(v2, copy)
    res = run("publish", "--artifacts", built, "--to", copy)  # into a signed mirror: needs the key
    assert res.exit_code == 2 and "--sign-key" in one_line_error(res)


# --------------------------------------------------------------------------------------------------
# 4. Freshness


def test_rollback_and_freeze_are_refused_while_offline_serves_what_was_verified(signed_pair, keys, tmp_path,
                                                                              monkeypatch):
    v1, v2 = signed_pair
    cache, key = tmp_path / "cache", keys["a"]["public_key"]
    with serving(v2) as srv:
        assert run("pull", MODEL, "--from", srv.url, "--trust", key, "--cache-dir", cache).exit_code == 0
        srv.root = v1  # the same URL now serves the older, validly signed index
        res = run("pull", MODEL, "--from", srv.url, "--trust", key, "--cache-dir", cache)
        assert res.exit_code == 1 and "rollback" in one_line_error(res)
        srv.root = v2
        later = release.now() + release.dt.timedelta(days=31)
        monkeypatch.setattr(release, "now", lambda: later)
        res = run("pull", MODEL, "--from", srv.url, "--trust", key, "--cache-dir", cache)
        assert res.exit_code == 1 and "expired" in one_line_error(res)
        n = srv.count()
        res = run("pull", MODEL, "--from", srv.url, "--trust", key, "--cache-dir", cache, "--json",
                  env={"ZOO_OFFLINE": "1"})
        assert res.exit_code == 0, res.output
        assert srv.count() == n  # no network call
        assert model_bytes(Path(json.loads(res.stdout)[0]["view"])) == (v2 / MODEL_PATH).read_bytes()
    fresh = tmp_path / "fresh"  # the publisher renews the index: a new counter and expiry, same versions
    shutil.copytree(v2, fresh)
    assert run("publish", "--artifacts", v2, "--to", fresh, "--sign-key", keys["a"]["private_key"],
               "--renew-index").exit_code == 0
    signed = json.loads((fresh / "index.json").read_text())["signed"]
    assert signed["version"] == 3 and release.parse_time(signed["expires"], "e") > later


def test_keygen_makes_a_private_key_only_its_owner_reads(tmp_path):
    res = run("keygen", "--out", tmp_path / "k", "--json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert signing.load_public_key(tmp_path / "k.pub") is not None
    res = run("keygen", "--out", tmp_path / "k")
    assert res.exit_code == 2 and "already exists" in one_line_error(res)
    res = run("pull", MODEL, "--trust", tmp_path / "k", "--from", tmp_path)
    assert res.exit_code == 2 and "public key" in one_line_error(res)


def test_signing_an_existing_version_later_keeps_its_files_and_manifest(built, keys, tmp_path):
    mirror = tmp_path / "mirror"
    hub.publish(built, mirror)
    vm = mirror / release.version_dir(MODEL, 1) / "manifest.json"
    before = vm.read_bytes()
    res = run("publish", "--artifacts", built, "--to", mirror, "--sign-key", keys["a"]["private_key"], "--json")
    assert res.exit_code == 0, res.output
    assert vm.read_bytes() == before  # the version itself is not rewritten
    signed = json.loads((mirror / "index.json").read_text())
    assert signed["signed"]["version"] == 2 and signed["signed"]["models"][MODEL][0]["signature"]
    res = run("pull", MODEL, "--from", mirror, "--trust", keys["a"]["public_key"], "--cache-dir", tmp_path / "c")
    assert res.exit_code == 0, res.output
