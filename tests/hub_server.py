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
    trickle:BPS      announce the full length, then send about BPS bytes per second
    redirect:URL     answer 302 with Location: URL
    file:PATH        serve the bytes of PATH instead (e.g. the model's bytes for manifest.json)

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
    def __init__(self, root: Path, tls: tuple[str, str] | None = None):
        self.root = Path(root)
        self.scheme = "https" if tls else "http"
        self.log: list[str] = []
        self.auth: list[str | None] = []  # the Authorization header of every request
        self.overrides: dict[str, bytes] = {}
        self._rules: dict[str, tuple[list[str], str]] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.mirror = self
        if tls:  # (certificate file, key file)
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/"

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

    def start(self) -> MirrorServer:
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

    def do_GET(self):
        srv: MirrorServer = self.server.mirror
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        behaviour = srv._next(path)
        srv.auth.append(self.headers.get("Authorization"))
        if behaviour.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", behaviour.partition(":")[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if behaviour.startswith("file:"):
            path, behaviour = behaviour.partition(":")[2], "ok"
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
        if kind == "trickle":
            step = max(1, int(arg) // 10)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                if srv.stop.wait(0.1):
                    return
            return
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
def built(small_build) -> Path:
    """The session's one small build (conftest's ``small_build``: dense_b0, input_dim 64, no parity
    matrix): artifacts/manifest.json + files. Read only."""
    return small_build


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


def tree(folder: Path) -> dict:
    """Everything under ``folder``: content hash, mode and mtime of files, link targets."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(folder))] = (st.st_mode, st.st_mtime_ns, os.readlink(p) if p.is_symlink()
                                               else hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
    return out


@pytest.fixture
def canary(tmp_path):
    """A folder outside the cache whose every file must survive every test untouched."""
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    (out / "canary.txt").write_text("mine")
    (out / "sub" / "keep.bin").write_bytes(b"\1" * 100)
    before = tree(out)
    yield out
    assert tree(out) == before, "something outside the cache was written, renamed or deleted"
    assert not (tmp_path / "nowhere").exists(), "a dangling link's target was created"


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _lock(rel: str) -> bool:
    return rel == "locks" or rel.startswith("locks/")  # empty lock files, kept for the next writer


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (files with size and mtime, folders, links), the lock files aside."""
    out = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(folder).as_posix()
            if _lock(rel):
                continue
            st = p.lstat()
            out[rel] = (st.st_mode, st.st_size if p.is_file() else None, st.st_mtime_ns if p.is_file() else None)
    return out


def files_under(folder: Path) -> list[str]:
    """Regular files and links under ``folder``, the (empty) lock files aside."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and not _lock(p.relative_to(folder).as_posix()))


@contextlib.contextmanager
def serving(root: Path):
    srv = MirrorServer(root).start()
    try:
        yield srv
    finally:
        srv.close()


class RawServer:
    """A TCP server on 127.0.0.1 for protocol attacks ``http.server`` cannot express. The mirror's
    files are served plainly, except ``target``, answered by ``attack(send, body, stop)``, where
    ``send(bytes)`` writes to the client and ``stop`` is set when the server closes. ``target`` may
    also be a dict of paths to attacks (``attack`` None)."""

    def __init__(self, root: Path, target, attack=None):
        import socket

        self.root = Path(root)
        self.attacks = dict(target) if isinstance(target, dict) else {target: attack}
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = urllib.parse.unquote(head.split(b" ", 2)[1].decode()).lstrip("/")
            self.requests.append(path)
            body = (self.root / path).read_bytes() if (self.root / path).is_file() else None
            try:
                if path in self.attacks:
                    self.attacks[path](conn.sendall, body, self.stop)
                elif body is None:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            except OSError:  # the client hung up: part of the tests
                pass

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(5)
        self.sock.close()
