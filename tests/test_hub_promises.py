"""Issue 23 (the download client's half) and issue 25's pull messages: every promise attacked again,
each against a real server on 127.0.0.1 or a real file layout, with a canary outside and the
wall-clock bound of every run asserted as a limit (a bound, not a timing)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_server import (  # noqa: F401 - fixtures
    MODEL,
    MODEL_PATH,
    TEST_IN,
    TEST_OUT,
    RawServer,
    built,
    canary,
    copy_tree,
    hub_env,
    mirror,
    server,
)

from zoo import hub
from zoo.errors import ManifestError
from zoo.fsutil import TMP_PREFIX

BOUND_S = 20  # every pull below given ZOO_DEADLINE=3 ends within this


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def write_manifest(root: Path, m: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(m))


def zoo(*args, env: dict | None = None, timeout: float = BOUND_S, **kw):
    """``python -m zoo ARGS``, its wall time asserted below ``timeout``."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=timeout + 30, **kw)
    r.seconds = time.monotonic() - t0
    assert r.seconds < timeout, f"zoo {' '.join(map(str, args))} took {r.seconds:.1f} s (bound {timeout} s)"
    return r


def one_line_error(r, code: int, *words: str) -> str:
    """Exit ``code`` and one error line (progress lines may come before it), holding ``words``."""
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and [x for x in lines if x.startswith("Error:")] == lines[-1:], r.stderr
    err = lines[-1]
    assert err.startswith("Error: zoo "), err
    for w in words:
        assert w in err, err
    return err


def no_locks_and_no_leftovers(cache: Path) -> None:
    assert not list(cache.glob("locks/*.lock")), "a lock file outlived its holder"
    assert not list(cache.rglob(TMP_PREFIX + "*"))


# --------------------------------------------------------------------------------------------------
# 23.1: a listed file never takes the place of the view's own manifest


def test_a_file_listed_as_manifest_json_is_refused_and_never_handed_back(server, mirror, tmp_path, canary):
    m = manifest_of(mirror)
    entry = m["models"][0]
    rec = next(f for f in entry["files"] if f["path"] == MODEL_PATH)
    rec["path"] = entry["model_path"] = "manifest.json"  # the model, listed where the view keeps its manifest
    server.overrides["manifest.json"] = json.dumps(m).encode()
    server.set("manifest.json", "ok", then=f"file:{MODEL_PATH}")  # and its bytes served there afterwards
    cache = tmp_path / "cache"
    r = zoo("pull", MODEL, "--from", server.url, "--cache-dir", cache)
    one_line_error(r, 1, "manifest.json", "view's own manifest")
    assert not (cache / "models").exists() and server.count(f"{MODEL_PATH}") == 0
    server.set("manifest.json", "ok", then=f"file:{MODEL_PATH}")
    with pytest.raises(hub.UnsafePathError, match="view's own manifest"):
        hub.load(MODEL, server.url, cache_dir=cache)


@pytest.mark.parametrize("clash", ["case", "folder", "twice"])
def test_listed_files_that_collide_are_refused(mirror, tmp_path, clash):
    src = copy_tree(mirror, tmp_path / "src")
    m = manifest_of(src)
    files = m["models"][0]["files"]
    rec = next(f for f in files if f["path"] == MODEL_PATH)
    if clash == "case":  # one file on a case-insensitive file system
        files.append(dict(rec, path="MANIFEST.json", role="test_input"))
    elif clash == "folder":  # a file named like the folder of another
        files.append(dict(rec, path=MODEL, role="test_input"))
    else:  # one path, two contents
        files.append(dict(rec, sha256="0" * 64, role="test_input"))
    write_manifest(src, m)
    with pytest.raises((hub.UnsafePathError, ManifestError), match="twice|folder|view's own manifest"):
        hub.pull([MODEL], str(src), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_what_pull_load_and_session_hand_back_is_the_verified_model(server, mirror, tmp_path):
    """Tampered bytes served (one byte flipped, the size kept) are never handed back by pull, load
    or session, and leave no view; from the honest server, what they hand back is the manifest's
    sha256, and the session computes the model's recorded test output from its test input."""
    import numpy as np
    from onnx import load_tensor, numpy_helper

    cache = tmp_path / "cache"
    rec = next(f for f in manifest_of(mirror)["models"][0]["files"] if f["path"] == MODEL_PATH)
    good = (mirror / MODEL_PATH).read_bytes()
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0xFF
    server.overrides[MODEL_PATH] = bytes(tampered)
    for hand_back in (lambda: hub.pull(MODEL, server.url, cache_dir=cache), lambda: hub.load(MODEL, server.url, cache_dir=cache),
                      lambda: hub.session(MODEL, server.url, cache_dir=cache)):
        with pytest.raises(hub.IntegrityError, match="sha256"):
            hand_back()
        assert not (cache / "models" / MODEL).exists()
    del server.overrides[MODEL_PATH]
    path = hub.load(MODEL, server.url, cache_dir=cache)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"] == \
        hashlib.sha256(hub.pull(MODEL, server.url, cache_dir=cache)[0].path.read_bytes()).hexdigest()
    sess = hub.session(MODEL, server.url, cache_dir=cache)
    x = numpy_helper.to_array(load_tensor(str(mirror / TEST_IN)))
    expected = numpy_helper.to_array(load_tensor(str(mirror / TEST_OUT)))
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# 23.2: no cache at the file system's root


@pytest.mark.parametrize("home", ["", None, "/"], ids=["empty", "unset", "root"])
def test_no_home_is_bad_input_naming_zoo_cache(mirror, home):
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "ZOO_CACHE", "XDG_CACHE_HOME")}
    if home is not None:
        env["HOME"] = home
    existed = os.path.lexists("/.cache")
    r = subprocess.run([sys.executable, "-m", "zoo", "pull", MODEL, "--from", str(mirror)], capture_output=True,
                       text=True, env=env, timeout=60)
    one_line_error(r, 2, "ZOO_CACHE", "home")
    assert os.path.lexists("/.cache") == existed, "the cache was put at the file system's root"


# --------------------------------------------------------------------------------------------------
# 23.4: the deadline bounds the whole request, headers included


def _slow_headers(send, body, stop):
    send(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.5):  # a header line that never ends, two bytes a second
        send(b"aa")


def _continue_forever(send, body, stop):
    while not stop.wait(0.002):
        send(b"HTTP/1.1 100 Continue\r\n\r\n")


def _trailers_forever(send, body, stop):
    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n")
    while not stop.wait(0.05):  # the body is whole; the trailer never ends
        send(b"X-Trailer: more\r\n")


@pytest.mark.timeout(BOUND_S + 100, func_only=True)  # BOUND_S is asserted; this ends a run that blocks
def test_the_deadline_bounds_headers_100_continue_and_trailers(mirror, tmp_path):
    attacks = {"slow headers": _slow_headers, "100 Continue forever": _continue_forever,
               "trailers forever": _trailers_forever}
    servers = {k: RawServer(mirror, MODEL_PATH, a).__enter__() for k, a in attacks.items()}
    env = {**os.environ, "ZOO_DEADLINE": "3", "ZOO_SPEED_LIMIT": "0"}
    try:
        t0 = time.monotonic()
        procs = {k: subprocess.Popen([sys.executable, "-m", "zoo", "pull", MODEL, "--from", s.url, "--cache-dir",
                                      str(tmp_path / k.replace(" ", "-"))], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k, s in servers.items()}
        outs = {k: p.communicate(timeout=BOUND_S + 30) for k, p in procs.items()}
        elapsed = time.monotonic() - t0
    finally:
        for s in servers.values():
            s.__exit__()
    assert elapsed < BOUND_S, f"three pulls with ZOO_DEADLINE=3 took {elapsed:.1f} s"
    for k, p in procs.items():
        assert servers[k].requests.count(MODEL_PATH) >= 1, k
        r = subprocess.CompletedProcess(p.args, p.returncode, *outs[k])
        one_line_error(r, 1, "deadline of 3 s", "ZOO_DEADLINE")
        assert not (tmp_path / k.replace(" ", "-") / "models").exists(), k


# --------------------------------------------------------------------------------------------------
# 23.5: a pull waiting for another's blob lock keeps its own deadline


@pytest.mark.timeout(BOUND_S + 100, func_only=True)  # BOUND_S is asserted; this ends a run that blocks
def test_a_pull_waiting_for_a_blob_lock_keeps_its_own_deadline(server, tmp_path):
    server.set(MODEL_PATH, then="stall")  # the first pull holds the blob's lock, stalled
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "zoo", "pull", MODEL, "--from", server.url, "--cache-dir", str(cache)]
    first = subprocess.Popen(args, env={**os.environ, "ZOO_DEADLINE": "120", "ZOO_SPEED_LIMIT": "0",
                                        "ZOO_SPEED_TIME": "100"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while server.count(MODEL_PATH) < 1 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        r = zoo("pull", MODEL, "--from", server.url, "--cache-dir", cache, env={"ZOO_DEADLINE": "3"})
        assert first.poll() is None, "the first pull should still hold the lock"
    finally:
        first.kill()
        first.communicate()
    one_line_error(r, 1, "waiting for another zoo process", "deadline of 3 s")


# --------------------------------------------------------------------------------------------------
# 23.10: `zoo cache clear` while a pull fetches its test data


@pytest.mark.timeout(BOUND_S + 100, func_only=True)  # BOUND_S is asserted; this ends a run that blocks
def test_cache_clear_during_a_pull_with_test_data_is_one_line(server, tmp_path, canary):
    cache = tmp_path / "cache"
    server.set(TEST_IN, "slow:3")  # the model is in, the test data is slow
    pull = subprocess.Popen([sys.executable, "-m", "zoo", "pull", MODEL, "--from", server.url, "--with-test-data",
                             "--cache-dir", str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while server.count(TEST_IN) < 1 and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        assert hub.cache_clear(None, cache)["removed"] == ["all"]  # what `zoo cache clear` runs, at once
        _, err = pull.communicate(timeout=BOUND_S)
    finally:
        pull.kill()
    r = subprocess.CompletedProcess(pull.args, pull.returncode, "", err)
    one_line_error(r, 1, "disappeared while it was pulled", "pull again")
    no_locks_and_no_leftovers(cache)
    assert hub.pull(MODEL, server.url, with_test_data=True, cache_dir=cache)[0].status == "downloaded"


# --------------------------------------------------------------------------------------------------
# 23.11: a manifest that passes the schema never crashes a consumer


@pytest.mark.parametrize("peer", [{"accuracy": "pass"}, {"file": None, "drop": "file"}, {"p50_ms": "fast"},
                                  {"batch_size": "1"}], ids=["accuracy-string", "no-file", "p50-string", "batch-string"])
def test_odd_peers_records_are_manifest_errors_never_crashes(mirror, tmp_path, peer):
    src = copy_tree(mirror, tmp_path / "src")
    m = manifest_of(src)
    entry = m["models"][0]
    rec = {"runtime": "onnxruntime", "backend": "onnxruntime:fp32", "precision": "fp32", "batch_size": 1,
           "verdict": "measured", "file": MODEL_PATH, "p50_ms": 1.0, "accuracy": {"verdict": "pass"}}
    rec.update({k: v for k, v in peer.items() if k != "drop"})
    rec.pop(peer.get("drop"), None)
    entry["peers"] = [rec]
    entry["recommended"] = {"threads": 1, "machine": {}, "by_batch": [
        {"batch_size": 1, "runtime": "openvino", "backend": "openvino", "precision": "fp32", "file": MODEL_PATH,
         "p50_ms": 1.0, "top1": 0.5}]}
    write_manifest(src, m)
    with pytest.raises(ManifestError):
        hub.session(MODEL, str(src), cache_dir=tmp_path / "cache")
    rec.update(accuracy={"verdict": "pass"}, file=MODEL_PATH, p50_ms=1.0, batch_size=1)  # the valid record
    write_manifest(src, m)
    assert hub.session(MODEL, str(src), cache_dir=tmp_path / "cache").get_inputs()[0].name
