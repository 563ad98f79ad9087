"""Releases a consumer can pin and trust, on TUF (issues 22 and 31).

Real mirrors written by ``zoo publish`` (their ``metadata/`` a TUF repository made with python-tuf),
served by a real HTTP server on 127.0.0.1; real keys; an unmodified python-tuf ``Updater`` and the
upstream ``model_signing`` command line as independent clients. The "retrained" dense_b0 is the
session's small build with its weights changed (one initializer scaled, the manifest's sizes and
sha256 recomputed): other weights, other bytes, at no second build's cost.

Each verification step of a trusted pull has an attack of its own here, with an assertion on its own
error (``tools/mutation_check.py`` removes each step in turn and shows that these tests fail).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import MODEL, MODEL_PATH, TEST_IN, TEST_OUT, built, hub_env, serving, snapshot  # noqa: F401

from zoo import hub
from zoo.builder import manifest as mf
from zoo.cli import cli
from zoo.hub import release, repo, signing


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture(autouse=True)
def no_trust_settings(monkeypatch, tmp_path):
    for var in ("ZOO_TRUST", "ZOO_CONFIG", "XDG_CONFIG_HOME", "ZOO_PUBLISHER", "ZOO_REQUIRE_SIGNED",
                "ZOO_KEY_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_CONFIG", str(tmp_path / "config"))


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
    """Key pairs: one publisher's root, targets and online keys (p), a second set (q), single keys a, b."""
    if "keys" not in _S:
        d = tmp_path_factory.mktemp("keys")
        out = {"a": hub.keygen(d / "a.key"), "b": hub.keygen(d / "b.key")}
        for who in ("p", "q"):
            (d / who).mkdir()
            for k in hub.keygen_publisher(d / who):
                out[f"{who}.{k['role']}"] = k
        _S["keys"] = out
    return _S["keys"]


def roles(keys, who="p") -> list[str]:
    """``zoo publish`` options for publisher ``who``'s three keys."""
    return ["--root-key", keys[f"{who}.root"]["private_key"], "--targets-key", keys[f"{who}.targets"]["private_key"],
            "--online-key", keys[f"{who}.online"]["private_key"]]


@pytest.fixture(scope="session")
def signed_pair(built, retrained, keys, tmp_path_factory) -> tuple[Path, Path]:
    """(a signed mirror after version 1, the same mirror after version 2), three keys. Read only."""
    if "signed" not in _S:
        base = tmp_path_factory.mktemp("signed")
        k = {r: keys[f"p.{r}"]["private_key"] for r in ("root", "targets", "online")}
        hub.publish(built, base / "v1", root_keys=[k["root"]], targets_keys=[k["targets"]], online_key=k["online"],
                    license="Apache-2.0")
        shutil.copytree(base / "v1", base / "v2")
        hub.publish(retrained, base / "v2", targets_keys=[k["targets"]], online_key=k["online"], license="Apache-2.0")
        _S["signed"] = (base / "v1", base / "v2")
    return _S["signed"]


def root_of(mirror: Path) -> Path:
    return mirror / "metadata" / "1.root.json"


def model_bytes(view: Path) -> bytes:
    return (view / MODEL_PATH).read_bytes()


def pull_json(*args, env=None) -> list[dict]:
    res = run("pull", *args, "--json", env=env)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def refused(*args, code=1, env=None) -> str:
    res = run(*args, env=env)
    assert res.exit_code == code, res.output
    return one_line_error(res)


# --------------------------------------------------------------------------------------------------
# Versions and lockfiles


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
        assert (old["version"], old["digest"], old["trust"]) == (1, digest1, "unverified")
        by_digest = pull_json(f"{MODEL}@{digest1}", "--from", srv.url, "--cache-dir", tmp_path / "c2")[0]
        assert model_bytes(Path(by_digest["view"])) == v1_bytes
        assert srv.count(MODEL_PATH) == 1  # pins fetch by content, never the mutable latest path

        n = srv.count()
        locked = pull_json("--lock", lockf, "--from", srv2.url, "--cache-dir", tmp_path / "c3")[0]
        assert model_bytes(Path(locked["view"])) == v1_bytes and srv.count() == n  # the copy served it
        assert hub.load(MODEL, lock=lockf, source=srv2.url, cache_dir=tmp_path / "c3").read_bytes() == v1_bytes
        sess = hub.session(MODEL, source=srv2.url, lock=lockf, cache_dir=tmp_path / "c3")
        assert sess.get_inputs()[0].shape[1] == 64

        line = refused("pull", f"{MODEL}@3", "--from", srv.url, "--cache-dir", cache, code=2)
        assert "versions: 1, 2" in line
        res = run("pull", MODEL, "--from", srv.url, "--cache-dir", cache)  # the table: version and full digest
        assert res.exit_code == 0 and f"{MODEL}@{models[0]['versions'][1]['digest']}" in res.stdout

    only_v2 = tmp_path / "only-v2"
    assert run("publish", "--artifacts", retrained, "--to", only_v2).exit_code == 0
    with serving(only_v2) as srv3:
        before = snapshot(tmp_path / "c4")
        res = run("pull", "--lock", lockf, "--from", srv3.url, "--cache-dir", tmp_path / "c4")
        assert res.exit_code != 0 and MODEL in one_line_error(res)
        assert snapshot(tmp_path / "c4") == before


def test_release_metadata_is_recorded_and_a_no_op_says_what_was_not_applied(built, tmp_path, monkeypatch):
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
    res = run("publish", "--artifacts", built, "--to", tmp_path / "n", "--license", "MIT", "--labels", labels)
    assert res.exit_code == 0 and "were not applied" in res.stderr and "new build" in res.stderr  # not silent
    assert mf.load(tmp_path / "n")["models"][0]["release"]["license"] is None
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\n")
    for args in (["--license", "not a license!"], ["--labels", bad]):
        refused("publish", "--artifacts", built, "--to", tmp_path / "o", *args, code=2)
    assert not (tmp_path / "o" / "metadata").exists()


# --------------------------------------------------------------------------------------------------
# Independent clients


def test_an_unmodified_python_tuf_updater_refreshes_from_a_zoo_mirror_and_downloads_a_verified_target(
        signed_pair, tmp_path):
    from tuf.ngclient import Updater

    _, v2 = signed_pair
    meta, targets = tmp_path / "meta", tmp_path / "targets"
    meta.mkdir()
    targets.mkdir()
    with serving(v2) as srv:  # python-tuf's own urllib3 fetcher, nothing of the zoo's
        up = Updater(str(meta), srv.url + "metadata/", str(targets), srv.url,
                     bootstrap=root_of(v2).read_bytes())
        up.refresh()
        info = up.get_targetinfo(f"releases/{MODEL}/2/manifest.json")
        assert info is not None and info.custom["zoo"]["version"] == 2
        path = up.download_target(info)
    entry = json.loads(Path(path).read_bytes())["models"][0]
    assert entry["release"]["digest"] == info.custom["zoo"]["digest"] == release.version_digest(entry["files"])
    assert entry["files"][0]["sha256"] in {hashlib.sha256((v2 / f["path"]).read_bytes()).hexdigest()
                                           for f in entry["files"]}


def test_a_signed_version_verifies_here_and_with_the_upstream_model_signing_cli(signed_pair, keys, tmp_path):
    _, v2 = signed_pair
    cache = tmp_path / "cache"
    with serving(v2) as srv:
        res = pull_json(f"{MODEL}@1", "--from", srv.url, "--trust", root_of(v2), "--with-test-data",
                        "--cache-dir", cache)[0]
    assert res["trust"] == "verified"
    view = Path(res["view"]) / MODEL
    sig = v2 / release.version_dir(MODEL, 1) / signing.SIGNATURE_NAME
    pub = keys["p.targets"]["public_key"]

    def upstream(folder):
        return subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", "--signature", str(sig),
                               "--public_key", pub, str(folder)], capture_output=True, text=True)

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
    assert rel["signed_by"] == keys["p.targets"]["key_id"]


# --------------------------------------------------------------------------------------------------
# Each step of a trusted pull, attacked on its own


def _resign(mirror: Path, keys, edit, who="p", role="targets") -> None:
    """What a holder of ``who``'s keys (or, with other keys, an attacker) does: edit the newest
    ``role`` metadata, bump it, re-sign it and everything above it, as a publisher would."""
    from tuf.api.metadata import Metadata, MetaFile

    from zoo.hub.keys import signer

    md = mirror / "metadata"
    ts = Metadata.from_file(str(md / "timestamp.json"))
    snap = Metadata.from_file(str(md / f"{ts.signed.snapshot_meta.version}.snapshot.json"))
    tv = snap.signed.meta["targets.json"].version
    if role == "targets":
        t = Metadata.from_file(str(md / f"{tv}.targets.json"))
        edit(t.signed)
        t.signed.version += 1
        t.sign(signer(keys[f"{who}.targets"]["private_key"]))
        (md / f"{t.signed.version}.targets.json").write_bytes(repo.to_bytes(t))
        tv = t.signed.version
    snap.signed.version += 1
    snap.signed.meta["targets.json"] = MetaFile(version=tv)
    online = signer(keys[f"{who}.online"]["private_key"])
    snap.sign(online)
    (md / f"{snap.signed.version}.snapshot.json").write_bytes(repo.to_bytes(snap))
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
    if role == "timestamp":
        edit(ts.signed)
    ts.sign(online)
    (md / "timestamp.json").write_bytes(repo.to_bytes(ts))


def _forge(mirror: Path, payload: bytes) -> None:
    """What someone who can write the mirror but holds no key does: model.onnx replaced everywhere,
    the version manifest rewritten to match, and its target entry in the metadata edited (the
    signatures cannot be redone)."""
    sha = hashlib.sha256(payload).hexdigest()
    (mirror / MODEL_PATH).write_bytes(payload)
    blob = mirror / release.blob_path(sha)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(payload)
    vm = mirror / release.version_dir(MODEL, 2) / "manifest.json"
    for p in (mirror / "manifest.json", vm):
        m = mf.load(p)
        for f in m["models"][0]["files"]:
            if f["path"] == MODEL_PATH:
                f.update(bytes=len(payload), sha256=sha)
        m["models"][0]["metadata"].update(model_bytes=len(payload), model_sha=sha)
        m["models"][0]["release"]["digest"] = release.version_digest(m["models"][0]["files"])
        mf.save(p, m)
    md = mirror / "metadata"
    ts = json.loads((md / "timestamp.json").read_text())
    sv = ts["signed"]["meta"]["snapshot.json"]["version"]
    tv = json.loads((md / f"{sv}.snapshot.json").read_text())["signed"]["meta"]["targets.json"]["version"]
    tpath = md / f"{tv}.targets.json"
    t = json.loads(tpath.read_text())
    data = vm.read_bytes()
    rec = t["signed"]["targets"][f"releases/{MODEL}/2/manifest.json"]
    rec.update(length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})
    rec["custom"]["zoo"]["digest"] = mf.load(vm)["models"][0]["release"]["digest"]
    tpath.write_text(json.dumps(t))


@pytest.mark.parametrize("attack", ["forged_metadata", "swapped_manifest", "other_key_bundle", "no_bundle",
                                    "other_publisher", "unsigned", "tampered_blob"])
def test_each_verification_step_refuses_its_own_attack_and_leaves_the_cache_alone(attack, signed_pair, built, keys,
                                                                                  tmp_path):
    v1, v2 = signed_pair
    mirror = tmp_path / "mirror"
    if attack == "other_publisher":
        hub.publish(built, mirror, sign_key=keys["a"]["private_key"])
    elif attack == "unsigned":
        hub.publish(built, mirror)
    else:
        shutil.copytree(v2, mirror)
    evil = (built / MODEL_PATH).read_bytes()[:-8] + b"backdoor"
    if attack == "forged_metadata":
        _forge(mirror, evil)
    elif attack == "swapped_manifest":  # version 1's manifest served as version 2's: the target hash differs
        shutil.copy(mirror / release.version_dir(MODEL, 1) / "manifest.json",
                    mirror / release.version_dir(MODEL, 2) / "manifest.json")
    elif attack == "other_key_bundle":  # the targets key pins a bundle made with another key
        entry = mf.load(mirror / release.version_dir(MODEL, 2))["models"][0]
        from zoo.hub.keys import signer

        bundle = signing.sign_version(entry, signer(keys["b"]["private_key"]))
        (mirror / release.version_dir(MODEL, 2) / "model.sig").write_bytes(bundle)

        def pin(t):
            t.targets[f"releases/{MODEL}/2/model.sig"] = repo.target_file(
                f"releases/{MODEL}/2/model.sig", bundle, {"model": MODEL, "version": 2, "kind": "signature"})
        _resign(mirror, keys, pin)
    elif attack == "no_bundle":
        _resign(mirror, keys, lambda t: t.targets.pop(f"releases/{MODEL}/2/model.sig"))
    elif attack == "tampered_blob":
        entry = mf.load(mirror / release.version_dir(MODEL, 2))["models"][0]
        blob = mirror / release.blob_path(next(f["sha256"] for f in entry["files"] if f["path"] == MODEL_PATH))
        blob.write_bytes(evil[: len(blob.read_bytes())])
    cache = tmp_path / "cache"
    with serving(mirror) as srv:
        if attack == "forged_metadata":  # without trust the forged metadata is all there is: accepted
            plain = pull_json(f"{MODEL}@2", "--from", srv.url, "--cache-dir", tmp_path / "naive")[0]
            assert model_bytes(Path(plain["view"])) == evil
        before, n = snapshot(cache), srv.count()
        line = refused("pull", MODEL, "--from", srv.url, "--trust", root_of(v2), "--cache-dir", cache)
        assert snapshot(cache) == before or attack == "tampered_blob"  # nothing added (a bad blob: nothing kept)
        if attack != "tampered_blob":
            assert not any(p == MODEL_PATH or p.startswith("blobs/") for p in srv.log[n:])  # not even downloaded
    expected = {
        "forged_metadata": "targets",  # python-tuf: the targets metadata's signature no longer verifies
        "swapped_manifest": "differs from its length or sha256 in the mirror's targets metadata",
        "other_key_bundle": "does not verify with the trusted key",
        "no_bundle": "has no model signature",
        "other_publisher": "not signed by the trusted keys",
        "unsigned": "not signed by the trusted keys",
        "tampered_blob": "sha256",
    }[attack]
    assert expected in line, line
    if attack == "forged_metadata":
        assert "not signed by the trusted keys" in line
    if attack == "tampered_blob":
        assert "rejected" in line and not list((cache / "blobs").rglob("*")) or \
            all(p.is_dir() for p in (cache / "blobs").rglob("*"))


def test_rollback_after_an_unsigned_pull_is_refused(signed_pair, tmp_path):
    v1, v2 = signed_pair
    cache, root = tmp_path / "cache", root_of(v2)
    with serving(v2) as srv:
        assert run("trust", "add", srv.url, root).exit_code == 0
        assert run("pull", MODEL, "--from", srv.url, "--cache-dir", cache).exit_code == 0
        state = sorted(p.name for p in (tmp_path / "config").rglob("timestamp.json"))
        # A pinned pull without trust (another source name, ZOO_TRUST unset): writes no trusted state.
        assert run("trust", "remove", srv.url).exit_code == 0
        before = snapshot(tmp_path / "config")
        assert run("pull", f"{MODEL}@1", "--from", srv.url, "--cache-dir", cache).exit_code == 0
        assert snapshot(tmp_path / "config") == before
        assert run("trust", "add", srv.url, root).exit_code == 0  # fresh state for this anchor ...
        assert run("pull", MODEL, "--from", srv.url, "--cache-dir", cache).exit_code == 0  # ... version 2 seen
        srv.root = v1  # the same URL now serves the older, validly signed metadata
        line = refused("pull", MODEL, "--from", srv.url, "--cache-dir", cache)
        assert "rollback" in line
        res = run("pull", f"{MODEL}@1", "--from", srv.url, "--cache-dir", cache, "--trust", root)
        assert res.exit_code == 1 and "rollback" in one_line_error(res)  # an explicit anchor keeps its state too
    assert state == ["timestamp.json"]


def _zoo_tree(mirror: Path, parent: Path) -> Path:
    """``parent/zoo/`` holding ``mirror`` (served at http://HOST:PORT/zoo/)."""
    shutil.copytree(mirror, parent / "zoo")
    return parent


def test_every_spelling_of_a_trusted_source_still_requires_the_signature(built, signed_pair, tmp_path):
    _, v2 = signed_pair
    unsigned = tmp_path / "unsigned"
    hub.publish(built, unsigned)  # a mirror anyone could have written: no signatures
    with serving(_zoo_tree(unsigned, tmp_path / "srv")) as srv:
        port = srv.url.rsplit(":", 1)[1].strip("/")
        assert run("trust", "add", f"http://127.0.0.1:{port}/zoo/", root_of(v2)).exit_code == 0
        for spelling in (f"http://127.0.0.1:{port}//zoo/", f"http://127.0.0.1:{port}/./zoo/",
                         f"http://127.0.0.1:{port}/zoo/../zoo/", f"http://user:token@127.0.0.1:{port}/zoo/",
                         f"HTTP://127.0.0.1:{port}/zoo", f"http://127.0.0.1:{port}/zoo/manifest.json"):
            line = refused("pull", MODEL, "--from", spelling, "--cache-dir", tmp_path / "cache")
            assert "not signed by the trusted" in line, (spelling, line)
        n = srv.count()
        res = run("pull", MODEL, "--from", f"http://localhost:{port}/zoo/", "--cache-dir", tmp_path / "cache")
        assert res.exit_code == 0 and "has no trust entry" in res.stderr  # another host name: said, not silent
        assert srv.count() > n
    for a, b in (("http://h:80/zoo", "http://H/zoo/"), ("https://h:443/a/./b//", "https://h/a/b/"),
                 ("http://bücher.example/z", "http://xn--bcher-kva.example/z/")):
        assert hub.resolve_source(a).identity == hub.resolve_source(b).identity
    assert hub.resolve_source("http://h:8080/zoo").identity != hub.resolve_source("http://h/zoo").identity
    assert hub.resolve_source(str(unsigned / ".." / "unsigned")).identity == hub.resolve_source(unsigned).identity


@pytest.mark.parametrize("store", ['{"store_version": 2, "require": false, "sources": {"x": {}}}',
                                   '{"store_version": 2, "require": false, "sources": {"x": null}}',
                                   '{"sources": {}}', "[1, 2", '{"store_version": 2, "require": "no", "sources": {}}'])
def test_a_damaged_trust_store_is_a_failure_never_no_trust(store, built, tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "trust.json").write_text(store)
    line = refused("pull", MODEL, "--from", built, "--cache-dir", tmp_path / "cache")
    assert "trust store" in line
    assert not (tmp_path / "cache").exists()


def test_trust_require_refuses_a_source_without_a_root(signed_pair, built, tmp_path, monkeypatch):
    _, v2 = signed_pair
    assert run("trust", "require").exit_code == 0
    line = refused("pull", MODEL, "--from", built, "--cache-dir", tmp_path / "c")
    assert "signatures are required" in line
    assert run("pull", MODEL, "--from", v2, "--trust", root_of(v2), "--cache-dir", tmp_path / "c").exit_code == 0
    assert json.loads(run("trust", "list", "--json").stdout)["require"] is True
    assert run("trust", "require", "--off").exit_code == 0
    assert run("pull", MODEL, "--from", built, "--cache-dir", tmp_path / "c").exit_code == 0
    monkeypatch.setenv("ZOO_REQUIRE_SIGNED", "1")
    assert "signatures are required" in refused("pull", MODEL, "--from", built, "--cache-dir", tmp_path / "c")


def test_a_root_key_as_anchor_accepts_only_the_root_it_signed(signed_pair, keys, tmp_path):
    _, v2 = signed_pair
    assert run("trust", "add", v2, keys["p.root"]["public_key"]).exit_code == 0
    assert pull_json(MODEL, "--from", v2, "--cache-dir", tmp_path / "c")[0]["trust"] == "verified"
    line = refused("pull", MODEL, "--from", v2, "--trust", keys["q.root"]["public_key"], "--cache-dir", tmp_path / "c")
    assert "is not signed by the trusted key" in line
    line = refused("pull", MODEL, "--from", v2, "--trust", keys["p.root"]["private_key"], code=2)
    assert "private key" in line


# --------------------------------------------------------------------------------------------------
# Freshness


def test_freeze_is_refused_online_while_offline_serves_what_was_verified(built, keys, tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    res = run("publish", "--artifacts", built, "--to", mirror, *roles(keys), "--index-ttl-days", "0.00002")  # ~2 s
    assert res.exit_code == 0, res.output
    with serving(mirror) as srv:
        assert run("pull", MODEL, "--from", srv.url, "--trust", root_of(mirror), "--cache-dir", cache).exit_code == 0
        time.sleep(2.5)
        line = refused("pull", MODEL, "--from", srv.url, "--trust", root_of(mirror), "--cache-dir", cache)
        assert "expired" in line and "frozen" in line
        n = srv.count()
        res = run("pull", f"{MODEL}@1", "--from", srv.url, "--trust", root_of(mirror), "--cache-dir", cache, "--json",
                  env={"ZOO_OFFLINE": "1"})
        assert res.exit_code == 0, res.output
        assert srv.count() == n  # no network call
        assert model_bytes(Path(json.loads(res.stdout)[0]["view"])) == (built / MODEL_PATH).read_bytes()
        # The publisher renews with the online key alone: a new timestamp, the same release.
        before = (mirror / "metadata" / "1.targets.json").read_bytes()
        assert run("publish", "--artifacts", built, "--to", mirror, "--online-key", keys["p.online"]["private_key"],
                   "--renew-index").exit_code == 0
        assert (mirror / "metadata" / "1.targets.json").read_bytes() == before
        assert run("pull", MODEL, "--from", srv.url, "--trust", root_of(mirror), "--cache-dir", cache).exit_code == 0


def test_a_timestamp_expiring_years_ahead_is_refused(signed_pair, keys, tmp_path):
    import datetime as dt

    _, v2 = signed_pair
    mirror = tmp_path / "m"
    shutil.copytree(v2, mirror)
    _resign(mirror, keys, lambda t: setattr(t, "expires", dt.datetime(9966, 1, 1, tzinfo=dt.timezone.utc)),
            role="timestamp")  # made with the real online key (as a thief of it could)
    line = refused("pull", MODEL, "--from", mirror, "--trust", root_of(v2), "--cache-dir", tmp_path / "c")
    assert "9966-01-01" in line and "freeze" in line


@pytest.mark.parametrize("option,value", [("--index-ttl-days", "1e7"), ("--index-ttl-days", "inf"),
                                          ("--index-ttl-days", "nan"), ("--index-ttl-days", "0"),
                                          ("--index-ttl-days", "-1"), ("--index-ttl-days", "soon"),
                                          ("--index-ttl-days", "32"), ("--targets-ttl-days", "1e9")])
def test_absurd_expiries_are_bad_input(option, value, built, tmp_path):
    line = refused("publish", "--artifacts", built, "--to", tmp_path / "m", option, value, code=2)
    assert option in line
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------------
# The publisher never signs what it cannot verify


def test_the_publisher_refuses_a_tampered_signed_mirror(signed_pair, retrained, keys, tmp_path):
    _, v2 = signed_pair
    k = ["--targets-key", keys["p.targets"]["private_key"], "--online-key", keys["p.online"]["private_key"]]
    edited = tmp_path / "edited"  # a version's license edited by hand (its hash in the metadata is not)
    shutil.copytree(v2, edited)
    vm = edited / release.version_dir(MODEL, 1) / "manifest.json"
    m = mf.load(vm)
    m["models"][0]["release"]["license"] = "LicenseRef-Attacker"
    mf.save(vm, m)
    before = snapshot(edited)
    line = refused("publish", "--artifacts", retrained, "--to", edited, *k, "--renew-index")
    assert "differs from its sha256" in line and snapshot(edited) == before
    forged = tmp_path / "forged"  # the metadata edited to match: its signature fails
    shutil.copytree(v2, forged)
    _forge(forged, b"x" * 100)
    before = snapshot(forged)
    line = refused("publish", "--artifacts", retrained, "--to", forged, *k)
    assert "does not verify" in line and snapshot(forged) == before
    other = tmp_path / "other"  # signing with a key the mirror's root does not name
    shutil.copytree(v2, other)
    line = refused("publish", "--artifacts", retrained, "--to", other, "--targets-key", keys["q.targets"]["private_key"],
                   "--online-key", keys["p.online"]["private_key"], "--renew-index")
    assert "is not one of this mirror's targets keys" in line
    line = refused("publish", "--artifacts", retrained, "--to", other, code=2)
    assert "is signed; give its keys" in line


def test_signing_an_unsigned_mirror_checks_every_version_against_the_local_files(built, retrained, keys, tmp_path):
    mirror = tmp_path / "mirror"
    hub.publish(built, mirror)
    hub.publish(retrained, mirror)
    vm1 = mirror / release.version_dir(MODEL, 1) / "manifest.json"
    before_vm = vm1.read_bytes()
    # Version 1 is not in the retrained build: the publisher cannot check it, so it is not signed.
    line = refused("publish", "--artifacts", retrained, "--to", mirror, *roles(keys))
    assert "version 1" in line and "--drop-unverified" in line
    assert not list((mirror / "releases").rglob("model.sig"))
    res = run("publish", "--artifacts", retrained, "--to", mirror, *roles(keys), "--drop-unverified")
    assert res.exit_code == 0, res.output
    assert "left out of the signed release" in res.stderr
    with serving(mirror) as srv:
        line = refused("pull", f"{MODEL}@1", "--from", srv.url, "--trust", root_of(mirror), "--cache-dir",
                       tmp_path / "c", code=2)
        assert "@1 is not published" in line
        assert pull_json(MODEL, "--from", srv.url, "--trust", root_of(mirror), "--cache-dir",
                         tmp_path / "c")[0]["version"] == 2
    assert vm1.read_bytes() == before_vm  # nothing published is rewritten
    # The attack of issue 31: version 1's manifest edited to list another model, then a signed publish.
    evil = tmp_path / "evil"
    hub.publish(built, evil)
    m = mf.load(evil / release.version_dir(MODEL, 1))
    m["models"][0]["params"] += 1  # any edit: the entry is no longer the build's
    mf.save(evil / release.version_dir(MODEL, 1) / "manifest.json", m)
    line = refused("publish", "--artifacts", built, "--to", evil, *roles(keys))
    assert "version 1" in line or "differs from its sha256" in line
    assert not list((evil / "releases").rglob("model.sig"))


def test_a_pre_tuf_mirror_is_read_with_a_note_refused_with_trust_and_migrated_after_verification(
        built, keys, tmp_path):
    mirror = tmp_path / "legacy"
    hub.publish(built, mirror)
    shutil.rmtree(mirror / "metadata")
    vm = (mirror / release.version_dir(MODEL, 1) / "manifest.json").read_bytes()
    signed = dict(release.empty_index(), version=4, expires="2099-01-01T00:00:00Z",
                  models={MODEL: [{"version": 1, "digest": release.version_digest(mf.load(built)["models"][0]["files"]),
                                   "manifest": f"{release.version_dir(MODEL, 1)}/manifest.json",
                                   "manifest_sha256": hashlib.sha256(vm).hexdigest()}]})
    from zoo.hub.keys import load_private

    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_private(keys["a"]["private_key"])  # an older zoo's index: ECDSA over its canonical JSON
    sig = key.sign(signing.canonical(signed), ec.ECDSA(hashes.SHA256()))
    (mirror / "index.json").write_text(json.dumps({"signed": signed, "signatures": [
        {"keyid": hub.keys.key_id(key), "sig": base64.b64encode(sig).decode()}]}))
    res = run("pull", f"{MODEL}@1", "--from", mirror, "--cache-dir", tmp_path / "c")
    assert res.exit_code == 0 and "pre-TUF" in res.stderr
    line = refused("pull", MODEL, "--from", mirror, "--trust", keys["a"]["public_key"], "--cache-dir", tmp_path / "c")
    assert "pre-TUF" in line
    line = refused("publish", "--artifacts", built, "--to", mirror, "--sign-key", keys["b"]["private_key"])
    assert "another key" in line and (mirror / "index.json").exists()  # not verified with this key: refused
    res = run("publish", "--artifacts", built, "--to", mirror, "--sign-key", keys["a"]["private_key"])
    assert res.exit_code == 0, res.output
    assert not (mirror / "index.json").exists() and (mirror / "metadata" / "timestamp.json").exists()
    assert pull_json(MODEL, "--from", mirror, "--trust", keys["a"]["public_key"],
                     "--cache-dir", tmp_path / "c")[0]["trust"] == "verified"


# --------------------------------------------------------------------------------------------------
# Roles, thresholds, rotation


def test_a_threshold_of_two_is_needed_by_the_publisher_and_checked_by_the_client(built, retrained, keys, tmp_path):
    mirror = tmp_path / "mirror"
    two = ["--root-key", keys["p.root"]["private_key"], "--root-key", keys["q.root"]["private_key"],
           "--targets-key", keys["p.targets"]["private_key"], "--targets-key", keys["q.targets"]["private_key"],
           "--online-key", keys["p.online"]["private_key"], "--threshold", "2"]
    res = run("publish", "--artifacts", built, "--to", mirror, *two)
    assert res.exit_code == 0, res.output
    root = json.loads(root_of(mirror).read_text())["signed"]["roles"]
    assert root["root"]["threshold"] == root["targets"]["threshold"] == 2
    assert pull_json(MODEL, "--from", mirror, "--trust", root_of(mirror), "--cache-dir", tmp_path / "c")[0]["trust"] \
        == "verified"
    line = refused("publish", "--artifacts", retrained, "--to", mirror, "--targets-key",
                   keys["p.targets"]["private_key"], "--online-key", keys["p.online"]["private_key"], code=2)
    assert "needs 2 signature(s)" in line
    # One of the two targets signatures removed (a thief of one targets key): the client refuses.
    md = mirror / "metadata"
    t = json.loads((md / "1.targets.json").read_text())
    t["signatures"] = t["signatures"][:1]
    (md / "1.targets.json").write_text(json.dumps(t))
    # A client with no earlier state (one that verified version 1 keeps its copy and never reads this one).
    line = refused("pull", MODEL, "--from", mirror, "--trust", root_of(mirror), "--cache-dir", tmp_path / "c2",
                   env={"ZOO_CONFIG": str(tmp_path / "fresh-config")})
    assert "targets" in line and "not signed by the trusted keys" in line


def test_a_client_follows_a_key_rotation_and_refuses_the_old_keys_after_it(built, keys, tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    assert run("publish", "--artifacts", built, "--to", mirror, *roles(keys, "p")).exit_code == 0
    old_root = tmp_path / "root-v1.json"
    shutil.copy(root_of(mirror), old_root)
    with serving(mirror) as srv:
        assert run("trust", "add", srv.url, old_root).exit_code == 0
        assert run("pull", MODEL, "--from", srv.url, "--cache-dir", cache).exit_code == 0
        res = run("rotate", "--to", mirror, "--root-key", keys["p.root"]["private_key"], "--new-root-key",
                  keys["q.root"]["private_key"], "--new-targets-key", keys["q.targets"]["private_key"],
                  "--new-online-key", keys["q.online"]["private_key"], "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["root_version"] == 2
        got = pull_json(MODEL, "--from", srv.url, "--cache-dir", cache)[0]  # the chain 1 -> 2 is followed
        assert got["trust"] == "verified"
        state = next((tmp_path / "config").rglob("root_history"))
        assert sorted(p.name for p in state.iterdir()) == ["1.root.json", "2.root.json"]
        # The publisher's old keys can no longer publish.
        line = refused("publish", "--artifacts", built, "--to", mirror, *roles(keys, "p")[2:], "--renew-index")
        assert "is not one of this mirror's" in line
        # Someone with the old keys signs a newer timestamp: refused, the old online key is out.
        _resign(mirror, keys, lambda t: None, who="p", role="timestamp")
        line = refused("pull", MODEL, "--from", srv.url, "--cache-dir", cache)
        assert "timestamp" in line and "not signed by the trusted keys" in line


# --------------------------------------------------------------------------------------------------
# Publishing under concurrency and kill -9 is in test_publish_races.py; keys:


def test_keygen_makes_keys_only_their_owner_reads_and_passphrases_work(built, tmp_path, monkeypatch):
    res = run("keygen", "--out", tmp_path / "k", "--json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert hub.keys.load_public(tmp_path / "k.pub") is not None
    assert "already exists" in refused("keygen", "--out", tmp_path / "k", code=2)
    assert "private key" in refused("pull", MODEL, "--trust", tmp_path / "k", "--from", tmp_path, code=2)
    (tmp_path / "pub").mkdir()
    monkeypatch.setenv("ZOO_KEY_PASSPHRASE", "correct horse battery")
    res = run("keygen", "--publisher", "--passphrase", "--out", tmp_path / "pub", "--json")
    assert res.exit_code == 0, res.output
    made = {k["role"]: k for k in json.loads(res.stdout)}
    assert made["root"]["encrypted"] and made["targets"]["encrypted"] and not made["online"]["encrypted"]
    assert b"ENCRYPTED" in (tmp_path / "pub" / "root.key").read_bytes()
    publish = ["publish", "--artifacts", built, "--to", tmp_path / "m", "--root-key", tmp_path / "pub" / "root.key",
               "--targets-key", tmp_path / "pub" / "targets.key", "--online-key", tmp_path / "pub" / "online.key"]
    assert run(*publish).exit_code == 0
    monkeypatch.setenv("ZOO_KEY_PASSPHRASE", "wrong")
    assert "passphrase" in refused(*publish, "--renew-index", code=2)
    monkeypatch.delenv("ZOO_KEY_PASSPHRASE")
    assert "ZOO_KEY_PASSPHRASE" in refused(*publish, "--renew-index", code=2)
    assert "public key" in refused("publish", "--artifacts", built, "--to", tmp_path / "n", "--sign-key",
                                   tmp_path / "k.pub", code=2)


def test_models_and_lock_verify_with_trust(signed_pair, tmp_path):
    _, v2 = signed_pair
    res = run("models", "--from", v2, "--trust", root_of(v2), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["trust"] == "verified" and [v["verified"] for v in rows[0]["versions"]] == [True, True]
    lockf = tmp_path / "z.lock"
    assert run("lock", f"{MODEL}@1", "--from", v2, "--trust", root_of(v2), "--out", lockf).exit_code == 0
    assert json.loads(lockf.read_text())["models"][MODEL]["version"] == 1
    bad = tmp_path / "bad"
    shutil.copytree(v2, bad)
    _forge(bad, b"y" * 64)
    assert "not signed by the trusted keys" in refused("models", "--from", bad, "--trust", root_of(v2))
    assert "not signed by the trusted keys" in refused("lock", MODEL, "--from", bad, "--trust", root_of(v2),
                                                       "--out", tmp_path / "x.lock")
    assert not (tmp_path / "x.lock").exists()
