"""A real, threaded HTTP server on 127.0.0.1 that serves a published mirror, and shared fixtures.

Per path, a queue of behaviours can be set for the next requests (then ``then`` for the rest):

    ok               serve the file
    tamper           flip one byte in the middle (same length)
    truncate         announce the full Content-Length, send half, close
    drop             close the connection without answering
    slow:SECONDS     wait, then serve
    stall            announce the full length, send half, then hang (until the server stops)
    extra            serve the file plus 1 KiB more (honest Content-Length)
    extra_nolength   the same without Content-Length (the body ends when the connection closes)
    nolength         the file without Content-Length
    status:CODE      answer with that HTTP status

Every request's path is logged, so tests can count (or rule out) network calls.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

MODEL = "dense_b0"
MODEL_PATH = f"{MODEL}/model.onnx"
TEST_IN = f"{MODEL}/test_data_set_0/input_0.pb"
TEST_OUT = f"{MODEL}/test_data_set_0/output_0.pb"


class MirrorServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.log: list[str] = []
        self.overrides: dict[str, bytes] = {}
        self._rules: dict[str, tuple[list[str], str]] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.mirror = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def set(self, path: str, *behaviours: str, then: str = "ok") -> None:
        with self._lock:
            self._rules[path] = (list(behaviours), then)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return len(self.log) if path is None else self.log.count(path)

    def _next(self, path: str) -> str:
        with self._lock:
            self.log.append(path)
            queue, then = self._rules.get(path, ([], "ok"))
            return queue.pop(0) if queue else then

    def start(self) -> "MirrorServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that hang up are part of the tests
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - the http.server API
        srv: MirrorServer = self.server.mirror
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        behaviour = srv._next(path)
        if path in srv.overrides:
            body = srv.overrides[path]
        else:
            target = (srv.root / path).resolve()
            if srv.root.resolve() not in target.parents or not target.is_file():
                self.send_error(404)
                return
            body = target.read_bytes()
        kind, _, arg = behaviour.partition(":")
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "status":
            self.send_error(int(arg))
            return
        if kind == "slow":
            if srv.stop.wait(float(arg)):
                return
        if kind == "tamper":
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        if kind in ("extra", "extra_nolength"):
            body = body + b"\0" * 1024
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if kind not in ("extra_nolength", "nolength"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind in ("truncate", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if kind == "stall":
                srv.stop.wait(120)
            self.close_connection = True
            return
        self.wfile.write(body)


# --------------------------------------------------------------------------------------------------
# Fixtures (import them into a test module by name; the build runs once per test process)

_SESSION: dict[str, Path] = {}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """A small dense_b0 build (input_dim 64, no parity matrix): artifacts/manifest.json + files."""
    if "built" not in _SESSION:
        from zoo.builder.artifact import request_for
        from zoo.builder.pipeline import build

        out = tmp_path_factory.mktemp("hub-build")
        results = build([request_for(MODEL, input_dim=64)], out)
        assert [r.status for r in results] == ["ok"], results
        _SESSION["built"] = out
    return _SESSION["built"]


@pytest.fixture(scope="session")
def mirror(built, tmp_path_factory) -> Path:
    """The build, published. Tests must not modify it (copy it with ``copy_tree`` first)."""
    if "mirror" not in _SESSION:
        from zoo import hub

        out = tmp_path_factory.mktemp("hub-mirror") / "mirror"
        hub.publish(built, out)
        _SESSION["mirror"] = out
    return _SESSION["mirror"]


@pytest.fixture
def server(mirror):
    srv = MirrorServer(mirror).start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(autouse=True)
def hub_env(monkeypatch, tmp_path):
    """No inherited zoo settings, no proxies, a private HOME, and a quick back-off."""
    from zoo import hub

    for var in ("ZOO_SOURCE", "ZOO_CACHE", "ZOO_OFFLINE", "XDG_CACHE_HOME", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hub, "BACKOFF_S", 0.01)
    monkeypatch.setattr(hub, "TIMEOUT_S", 5.0)


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (files with size and mtime, folders, links), the lock file aside."""
    out = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(folder).as_posix()
            if rel == ".lock":
                continue
            st = p.lstat()
            out[rel] = (st.st_mode, st.st_size if p.is_file() else None, st.st_mtime_ns if p.is_file() else None)
    return out


def files_under(folder: Path) -> list[str]:
    """Regular files and links under ``folder``, the (empty) lock file aside."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() != ".lock")


@contextlib.contextmanager
def serving(root: Path):
    srv = MirrorServer(root).start()
    try:
        yield srv
    finally:
        srv.close()
