"""Issue 12: the cache and the loaders hold under attack. Real server on 127.0.0.1, real files, real
links, FIFOs, mounts; every finding of the issue is a test here."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hub_server import (  # noqa: F401 - fixtures
    MODEL,
    MODEL_PATH,
    TEST_IN,
    TEST_OUT,
    built,
    canary,
    copy_tree,
    hub_env,
    mirror,
    server,
    serving,
    snapshot,
)

from zoo import hub
from zoo.errors import ZooError
from zoo.fsutil import TMP_PREFIX

ROOT = Path(__file__).resolve().parents[1]


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def rec(root: Path, path: str) -> dict:
    return next(f for f in manifest_of(root)["models"][0]["files"] if f["path"] == path)


# --------------------------------------------------------------------------------------------------
# 1. Links, hard links and FIFOs planted at every level of a real cache


M, B = f"models/{MODEL}", "blobs/sha256/{ab}/{sha}"
PLANTS = [  # (where, what): every folder and file level of a real cache
    ("models", "dir"), (M, "dir"), (f"{M}/{MODEL}", "dir"), (f"{M}/manifest.json", "file"),
    (f"{M}/{MODEL_PATH}", "file"), (f"{M}/{TEST_OUT}", "file"), ("blobs", "dir"), ("blobs/sha256", "dir"),
    ("blobs/sha256/{ab}", "dir"), (B, "file"), ("sources", "dir"), ("locks", "dir"),
    ("locks/blob-{sha}.lock", "dangling"), (f"locks/view-{MODEL}.lock", "dangling"),
    (f"{M}/{MODEL_PATH}", "hardlink"), (B, "hardlink"), (f"{M}/manifest.json", "fifo"), (B, "fifo"),
]


def _plant(cache: Path, rel: str, kind: str, outside: Path) -> None:
    p = cache / rel
    if p.is_dir() and not p.is_symlink():
        import shutil

        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        p.symlink_to(outside)
    elif kind == "file":
        p.symlink_to(outside / "canary.txt")
    elif kind == "dangling":
        p.symlink_to(outside.parent / "nowhere")
    elif kind == "hardlink":
        os.link(outside / "sub" / "keep.bin", p)
    elif kind == "fifo":
        os.mkfifo(p)


def _ops(cache: Path, url: str):
    yield "pull", lambda: hub.pull([MODEL], url, with_test_data=True, cache_dir=cache)
    yield "load", lambda: hub.load(MODEL, url, cache_dir=cache)
    yield "session", lambda: hub.session(MODEL, url, cache_dir=cache)
    yield "verify", lambda: hub.cache_verify(cache)
    yield "list", lambda: hub.cache_list(cache)
    yield "clear", lambda: hub.cache_clear([MODEL], cache)
    yield "clear-all", lambda: hub.cache_clear(None, cache)


@pytest.mark.parametrize("where, kind", PLANTS, ids=[f"{k}:{w}" for w, k in PLANTS])
def test_planted_links_hard_links_and_fifos_never_lead_outside_the_cache(server, mirror, tmp_path, canary,
                                                                           where, kind):
    cache = tmp_path / "cache"
    hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    sha = rec(mirror, MODEL_PATH)["sha256"]
    _plant(cache, where.format(ab=sha[:2], sha=sha), kind, canary)
    outcomes = {}
    for name, op in _ops(cache, server.url):
        try:
            op()
            outcomes[name] = "ok"
        except ZooError as e:  # typed, one line; never a traceback
            assert "\n" not in str(e)
            outcomes[name] = type(e).__name__
    assert outcomes["clear-all"] == "ok", outcomes
    # clear removed the zoo's folders (links as links); what they pointed to is the canary, unchanged
    assert [p.name for p in cache.iterdir() if p.name != "locks"] == []


def test_a_dangling_link_in_place_of_a_lock_creates_nothing(server, mirror, tmp_path, canary):
    sha = rec(mirror, MODEL_PATH)["sha256"]
    cache = tmp_path / "cache"
    (cache / "locks").mkdir(parents=True)
    (cache / "locks" / f"blob-{sha}.lock").symlink_to(tmp_path / "nowhere")
    with pytest.raises(hub.UnsafePathError, match="link"):
        hub.load(MODEL, server.url, cache_dir=cache)


def test_a_view_folder_replaced_by_a_link_is_never_written_through(server, mirror, tmp_path, canary):
    cache = tmp_path / "cache"
    hub.load(MODEL, server.url, cache_dir=cache)
    view = cache / "models" / MODEL
    import shutil

    shutil.rmtree(view)
    view.symlink_to(canary)
    with pytest.raises(hub.UnsafePathError, match="outside"):
        hub.load(MODEL, server.url, cache_dir=cache)
    hub.cache_clear([MODEL], cache)  # removes the link, not the canary's files
    assert not view.is_symlink() and not view.exists()
    assert hub.load(MODEL, server.url, cache_dir=cache).is_file()


@pytest.mark.timeout(30, func_only=True)
def test_a_fifo_named_manifest_json_does_not_block(mirror, tmp_path):
    src = copy_tree(mirror, tmp_path / "src")
    (src / "manifest.json").unlink()
    os.mkfifo(src / "manifest.json")
    t0 = time.monotonic()
    with pytest.raises(hub.UnsafePathError, match="not a regular file"):
        hub.list_models(str(src))
    assert time.monotonic() - t0 < 5


# --------------------------------------------------------------------------------------------------
# 2. Bounded time; per-artifact locks; no lock for readers


@pytest.mark.timeout(120, func_only=True)
def test_a_trickling_server_is_given_up_while_another_process_reads_the_cache(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    hub.load(MODEL, server.url, cache_dir=cache)  # version 1 is cached
    new = b"v2" * 50_000  # version 2 of the model: a new blob, served at 200 B/s
    m = manifest_of(mirror)
    r = next(f for f in m["models"][0]["files"] if f["path"] == MODEL_PATH)
    r.update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest())
    m["models"][0]["metadata"].update(model_bytes=r["bytes"], model_sha=r["sha256"])
    server.overrides.update({"manifest.json": json.dumps(m).encode(), MODEL_PATH: new})
    server.set(MODEL_PATH, then="trickle:200")
    env = dict(os.environ, ZOO_SPEED_LIMIT="1024", ZOO_SPEED_TIME="1", ZOO_DEADLINE="20")
    cmd = [sys.executable, "-m", "zoo", "pull", MODEL, "--from", server.url, "--cache-dir", str(cache)]
    t0 = time.monotonic()
    puller = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while server.count(MODEL_PATH) < 2 and puller.poll() is None:
            time.sleep(0.05)
        reader = subprocess.run(
            [sys.executable, "-c", f"from zoo import hub; print(hub.load({MODEL!r}, {server.url!r}, cache_dir={str(cache)!r}))"],
            env=dict(os.environ, ZOO_OFFLINE="1"), capture_output=True, text=True, timeout=60)
        assert puller.poll() is None, "the trickling pull should still be running while the reader reads"
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.strip() == str(cache / "models" / MODEL / MODEL_PATH)
        _, err = puller.communicate(timeout=120)
    finally:
        puller.kill()
    # the floor (1 s windows, each attempt) ends it long before ZOO_DEADLINE=20
    assert time.monotonic() - t0 < 20, f"the trickling pull ran {time.monotonic() - t0:.1f} s"
    assert puller.returncode == 1
    assert "under the floor of 1,024 B/s over 1 s" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Error: ")
    assert list(cache.rglob(TMP_PREFIX + "*")) == []


@pytest.mark.timeout(30, func_only=True)
def test_a_pull_has_an_overall_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DEADLINE", "1.5")
    monkeypatch.setenv("ZOO_SPEED_LIMIT", "0")  # no floor: only the deadline ends it
    server.set(MODEL_PATH, then="trickle:2000")
    t0 = time.monotonic()
    with pytest.raises(hub.SourceError, match="deadline of 1.5 s"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert time.monotonic() - t0 < 1.5 + 2


@pytest.mark.parametrize("var, value", [("ZOO_SPEED_LIMIT", "fast"), ("ZOO_SPEED_TIME", "0"), ("ZOO_DEADLINE", "-1")])
def test_bad_time_settings_are_bad_input(server, tmp_path, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")


@pytest.mark.timeout(60, func_only=True)
def test_a_lock_held_on_one_blob_does_not_stop_another_model(server, mirror, tmp_path, monkeypatch):
    """Locks are per blob: a writer stuck on the test output's blob (holding the cache's own lock
    for it) stops no pull of other blobs, and stops the pull that needs that blob until its
    deadline. One lock per kind fails the first half; no lock fails the second."""
    from zoo.hub.cache import Cache

    cache = tmp_path / "cache"
    sha = rec(mirror, TEST_OUT)["sha256"]
    held, release = threading.Event(), threading.Event()

    def hold():  # another writer of that blob, stuck
        with Cache(cache) as c, c.lock("blob", sha):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    monkeypatch.setenv("ZOO_DEADLINE", "3")
    try:
        t0 = time.monotonic()
        assert hub.load(MODEL, server.url, cache_dir=cache).is_file()  # its own blobs: not waited for
        assert time.monotonic() - t0 < 3
        t0 = time.monotonic()
        with pytest.raises(hub.SourceError, match="waiting for another zoo process.*deadline of 3 s"):
            hub.pull(MODEL, server.url, with_test_data=True, cache_dir=cache)  # needs the held blob
        assert time.monotonic() - t0 < 3 + 2
    finally:
        release.set()
        holder.join(10)
    assert hub.pull(MODEL, server.url, with_test_data=True, cache_dir=cache)[0].path.is_file()


# --------------------------------------------------------------------------------------------------
# 3. Schemes, redirects, credentials


@pytest.fixture
def listener():
    """A TCP listener that counts connections (an ftp:// redirect must make none)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    seen, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                seen.append(1)
                conn.close()
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1], seen
    stop.set()
    t.join(2)
    sock.close()


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher"])
def test_a_redirect_to_another_scheme_makes_no_connection(server, tmp_path, listener, scheme):
    port, seen = listener
    server.set("manifest.json", then=f"redirect:{scheme}://127.0.0.1:{port}/manifest.json")
    with pytest.raises(hub.SourceError, match="only http\\(s\\) redirects"):
        hub.list_models(server.url)
    assert seen == [] and server.count("manifest.json") == 1  # no retry either


def test_a_redirect_to_http_is_followed(server, mirror):
    with serving(mirror) as other:
        server.set("manifest.json", then=f"redirect:{other.url}manifest.json")
        assert [m["name"] for m in hub.list_models(server.url)] == [MODEL]
        assert other.count("manifest.json") == 1


def test_credentials_are_sent_to_their_host_and_never_shown(server, tmp_path, capsys):
    url = server.url.replace("http://", "http://user:s3cret@")
    cache = tmp_path / "cache"
    lines = []
    (result,) = hub.pull([MODEL], url, cache_dir=cache, progress=lines.append)
    assert server.auth and all(a == "Basic dXNlcjpzM2NyZXQ=" for a in server.auth)
    shown = json.dumps(result.summary()) + "".join(lines) + "".join(
        p.read_text() for p in cache.rglob("*") if p.is_file() and p.suffix == ".json")
    assert "s3cret" not in shown and "user" not in shown.replace("/home/", "")
    assert result.source == server.url.replace("http://", "http://***@")
    server.set("manifest.json", then="status:404")
    with pytest.raises(hub.SourceError) as err:
        hub.list_models(url)
    assert "s3cret" not in str(err.value) and "***@127.0.0.1" in str(err.value)


def test_credentials_never_follow_a_redirect_to_another_host(server, mirror):
    with serving(mirror) as other:
        server.set("manifest.json", then=f"redirect:{other.url}manifest.json")
        hub.list_models(server.url.replace("http://", "http://user:s3cret@"))
        assert other.auth == [None]


def test_credentials_are_redacted_in_cli_errors(tmp_path):
    with serving(tmp_path) as srv:
        url = srv.url.replace("http://", "http://user:s3cret@")
    r = subprocess.run([sys.executable, "-m", "zoo", "models", "--from", url], capture_output=True, text=True,
                       env=dict(os.environ, ZOO_SPEED_TIME="1"), timeout=120)
    assert r.returncode == 1 and "s3cret" not in r.stderr + r.stdout and "***@" in r.stderr
    r = subprocess.run([sys.executable, "-m", "zoo", "models", "--from", "ftp://user:s3cret@127.0.0.1/"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "s3cret" not in r.stderr and "ftp://***@127.0.0.1/" in r.stderr
