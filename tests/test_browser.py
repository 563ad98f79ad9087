"""The browser example (examples/browser/index.html) in a real headless Chromium.

A real HTTP server on 127.0.0.1 serves a mirror (an artifacts folder: manifest.json plus the files
it lists, as ``zoo publish`` lays it out), the page, and onnxruntime-web's dist/ from verify/node.
Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``), and the
test reads the page's DOM once the page reports a verdict.

Nothing is skipped: Chromium (Debian's ``chromium``, or ``$ZOO_CHROMIUM``) and the packages of
verify/node are required; without them the tests fail and say what to install.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from zoo.exporters import ExportSpec
from zoo.builder.steps import precision_extra
from zoo.verify import js
from zoo.verify.parity import DEFAULT_TOLERANCES
from zoo.builder import manifest as mf
from zoo.builder.artifact import read_tensor, request_for
from zoo.builder.pipeline import build

from tamper import change_one_weight_byte, recompute_manifest

ROOT = Path(__file__).resolve().parents[1]
PAGE_DIR = ROOT / "examples" / "browser"
ORT_DIST = js.NODE_DIR / "node_modules" / "onnxruntime-web" / "dist"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-pipe",
]
PAGE_TIMEOUT_S = 90.0


def chromium_executable() -> str:
    exe = os.environ.get("ZOO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Chromium is required for the browser tests: apt-get install -y chromium (or set $ZOO_CHROMIUM)")
    return exe


# --- a static server: /mirror/ -> artifacts, /page/ -> examples/browser, /page/ort/ -> ort dist ---


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
                      ".onnx": "application/octet-stream", ".pb": "application/octet-stream"}
    routes: dict[str, Path] = {}
    log: list[str] = []

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                rel = Path(path[len(prefix):])
                if ".." in rel.parts:
                    return "/nonexistent"
                return str(self.routes[prefix] / rel)
        return "/nonexistent"

    def log_message(self, fmt, *args):
        self.log.append(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else '?'}")


@contextlib.contextmanager
def serve(routes: dict[str, Path]):
    handler = type("Handler", (_Handler,), {"routes": routes, "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.log
    finally:
        server.shutdown()
        server.server_close()


# --- Chromium over the DevTools protocol on a pipe (fd 3: commands in, fd 4: replies out) -------


class Chromium:
    def __init__(self, exe: str, profile: Path, log: Path):
        self.log_file = open(log, "wb")
        # The shell hands our stdin/stdout pipes to Chromium as fds 3 and 4 and points its own
        # stdin/stdout elsewhere, so that its logging never mixes with the protocol.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "sh", exe, *CHROMIUM_FLAGS,
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file)
        self.next_id = 0
        self.replies: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(1 << 16)
            if not chunk:
                self.replies.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                (self.replies.put(msg) if "id" in msg else self.events.append(msg))

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout}s") from None
            if reply is None:
                raise RuntimeError(f"Chromium exited (status {self.proc.poll()}) during {method}")
            if reply["id"] == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str, timeout: float = PAGE_TIMEOUT_S) -> dict:
        """Load ``url`` in a fresh tab; wait until the page leaves status "running"; return its DOM as data."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self.call("Page.navigate", {"url": url}, session)
            deadline = time.monotonic() + timeout
            probe = ("JSON.stringify(document.body && document.readyState !== 'loading' ? {"
                     "status: document.body.dataset.status, text: document.getElementById('status').textContent,"
                     "summary: document.getElementById('summary').textContent,"
                     "model: document.getElementById('model').textContent,"
                     "ort: document.getElementById('ort-version').textContent,"
                     "pin: document.getElementById('pin').textContent,"
                     "rows: [...document.querySelectorAll('tr.row')].map(tr => [...tr.cells].map(c => c.textContent))"
                     "} : null)")
            while True:
                try:
                    value = self.call("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                      session)["result"].get("value")
                except RuntimeError:  # the context went away mid-navigation: ask again
                    value = None
                dom = json.loads(value) if value else None
                if dom and dom["status"] not in (None, "running"):
                    return dom
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} still running after {timeout}s: {dom}")
                time.sleep(0.2)
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def close(self):
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.log_file.close()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A published mirror of dense_b0 (small: input width 16, 10 classes), fp32 and int8."""
    out = tmp_path_factory.mktemp("mirror")
    req = request_for("dense_b0", input_dim=16, num_classes=10, spec=ExportSpec(exporter="torchscript"))
    (result,) = build([req], out, extras=[precision_extra(("fp32", "int8"), verify=False)])
    assert result.status == "ok", result.error
    return out


@pytest.fixture(scope="module")
def site(mirror):
    if not (ORT_DIST / "ort.min.js").is_file():
        pytest.fail(f"onnxruntime-web is not installed in verify/node ({js.INSTALL_HINT})")
    with serve({"/mirror/": mirror, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}) as (base, log):
        yield base, log


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = chromium_executable()
    tmp = tmp_path_factory.mktemp("chromium")
    chrome = Chromium(exe, tmp / "profile", tmp / "chromium.log")
    try:
        chrome.call("Browser.getVersion", timeout=60)
        yield chrome
    finally:
        chrome.close()


def expected_rows(mirror: Path) -> tuple[np.ndarray, list[int]]:
    y = read_tensor((mirror / "dense_b0/test_data_set_0/output_0.pb").read_bytes())
    return y.astype(np.float64), [int(i) for i in y.argmax(axis=1)]


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_browser_example_runs_the_test_data(browser, site, mirror, precision):
    base, log = site
    dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&model=dense_b0&precision={precision}")
    assert dom["status"] == "pass", dom
    assert dom["text"] == "pass" and dom["model"] == "dense_b0"
    assert dom["ort"] == json.loads((js.NODE_DIR / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    y, tops = expected_rows(mirror)
    assert [int(r[0]) for r in dom["rows"]] == [0, 1, 2]
    assert [int(r[1]) for r in dom["rows"]] == tops  # the page's top class per row
    assert [int(r[2]) for r in dom["rows"]] == tops  # and the expected one it shows beside it
    tol = DEFAULT_TOLERANCES[precision]
    for row, top in enumerate(tops):
        assert float(dom["rows"][row][3]) == pytest.approx(float(y[row, top]), abs=tol.atol + tol.rtol * abs(y[row, top]) + 1e-4)
    m = re.fullmatch(r"max abs error (\S+) \(atol (\S+), rtol (\S+)\), batch 3", dom["summary"])
    assert m, dom["summary"]
    assert (float(m[2]), float(m[3])) == (tol.atol, tol.rtol) and float(m[1]) <= tol.atol + tol.rtol * np.abs(y).max()
    # It really came over HTTP from the mirror, with the wasm runtime beside the page.
    model_path = mf.file_record(mf.load(mirror), "dense_b0", "model", precision)["path"]
    for path in ("/mirror/manifest.json", f"/mirror/{model_path}", "/mirror/dense_b0/test_data_set_0/input_0.pb",
                 "/page/ort/ort.min.js"):
        assert any(line.startswith(f"GET {path} -> 200") for line in log), (path, log)
    assert any(re.match(r"GET /page/ort/\S+\.wasm -> 200", line) for line in log), log


def test_browser_example_refuses_a_model_whose_sha256_differs(browser, site, mirror, tmp_path):
    """A tampered mirror is caught by the page (it checks the manifest's sha256 before running)."""
    bad = tmp_path / "bad"
    shutil.copytree(mirror, bad)
    model = bad / "dense_b0" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with serve({"/mirror/": bad, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}) as (base, _):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/")
    assert dom["status"] == "error"
    assert dom["summary"] == "dense_b0/model.onnx: sha256 differs from the manifest"


@pytest.fixture(scope="module")
def external_mirror(tmp_path_factory) -> Path:
    """The same model built with --external-data: every model file's tensors in FILE.data beside it."""
    out = tmp_path_factory.mktemp("external-mirror")
    req = request_for("dense_b0", input_dim=16, num_classes=10,
                      spec=ExportSpec(exporter="torchscript", external_data=True))
    (result,) = build([req], out, extras=[precision_extra(("fp32", "int8"), verify=False)])
    assert result.status == "ok", result.error
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_browser_example_loads_a_model_saved_with_external_data(browser, external_mirror, precision):
    model_path = mf.file_record(mf.load(external_mirror), "dense_b0", "model", precision)["path"]
    data_path = mf.file_record(mf.load(external_mirror), "dense_b0", "external_data", precision)["path"]
    assert data_path == model_path + ".data"
    with serve({"/mirror/": external_mirror, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}) as (base, log):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&model=dense_b0&precision={precision}")
    assert dom["status"] == "pass", dom
    assert [int(r[1]) for r in dom["rows"]] == expected_rows(external_mirror)[1]
    for path in (model_path, data_path):  # both files came over HTTP
        assert any(line.startswith(f"GET /mirror/{path} -> 200") for line in log), (path, log)


def test_browser_example_refuses_external_data_whose_sha256_differs(browser, external_mirror, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(external_mirror, bad)
    data = bad / "dense_b0" / "model.onnx.data"
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0xFF
    data.write_bytes(bytes(blob))
    with serve({"/mirror/": bad, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}) as (base, _):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/")
    assert dom["status"] == "error"
    assert dom["summary"] == "dense_b0/model.onnx.data: sha256 differs from the manifest"


def test_browser_example_reports_an_unknown_model(browser, site):
    base, _ = site
    dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&model=dense_b9")
    assert dom["status"] == "error" and "dense_b9 is not in" in dom["summary"]


def test_page_tolerances_are_the_python_verifier_s():
    text = (PAGE_DIR / "index.html").read_text()
    m = re.search(r"const TOLERANCES = (\{[^}]*\});", text)
    page = json.loads(re.sub(r"(\w+):", r'"\1":', m[1]))
    assert page == {p: [t.atol, t.rtol] for p, t in DEFAULT_TOLERANCES.items()}


# --- a pinned sha256 (?sha256=HEX): the page refuses other bytes, whatever the manifest says -------


def test_browser_example_runs_the_model_it_is_pinned_to(browser, site, mirror):
    base, _ = site
    sha = mf.file_record(mf.load(mirror), "dense_b0", "model", "int8")["sha256"]
    dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&precision=int8&sha256={sha.upper()}")
    assert dom["status"] == "pass", dom
    assert dom["pin"] == sha and [int(r[1]) for r in dom["rows"]] == expected_rows(mirror)[1]


def test_browser_example_refuses_bytes_other_than_the_pinned_ones(browser, mirror, tmp_path):
    """A compromised mirror: one byte of model.onnx changed and the manifest recomputed to match."""
    pinned = mf.file_record(mf.load(mirror), "dense_b0")["sha256"]
    bad = tmp_path / "bad"
    shutil.copytree(mirror, bad)
    change_one_weight_byte(bad / "dense_b0" / "model.onnx")
    recompute_manifest(bad)
    served = mf.file_record(mf.load(bad), "dense_b0")["sha256"]
    assert served != pinned
    routes = {"/mirror/": bad, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}
    with serve(routes) as (base, _):  # without a pin the page cannot tell: it runs the served model
        assert browser.open(f"{base}/page/index.html?mirror={base}/mirror/")["status"] == "pass"
    with serve(routes) as (base, log):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&sha256={pinned}")
    assert dom["status"] == "error" and dom["rows"] == [], dom
    assert dom["summary"] == f"dense_b0/model.onnx: sha256 {served} differs from the pinned {pinned}; not loaded"
    # nothing ran: the test data was never fetched, and no session was made (no wasm loaded)
    assert any(line.startswith("GET /mirror/dense_b0/model.onnx -> 200") for line in log), log
    assert not any("test_data_set_0" in line or ".wasm" in line for line in log), log


def test_browser_example_refuses_a_malformed_pin_before_fetching_anything(browser, site):
    base, log = site
    before = len(log)
    dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&sha256=abc123")
    assert dom["status"] == "error" and dom["summary"] == "sha256=abc123: expected 64 hex digits"
    assert not any(line.startswith("GET /mirror/") for line in log[before:]), log[before:]


def test_browser_example_follows_the_profile(browser, tmp_path_factory):
    """?profile= (issue 34): the page loads the file the profile names for its onnxruntime-web, pinned
    to the profile's sha256, here the opset 15 target instead of model.onnx."""
    from zoo.builder.targets import targets_extra

    out = tmp_path_factory.mktemp("profiled-mirror")
    req = request_for("dense_b0", input_dim=16, num_classes=10, spec=ExportSpec(exporter="torchscript"))
    (result,) = build([req], out, extras=[targets_extra((15,), verify=False)])
    assert result.status == "ok", result.error
    entry = mf.entry(mf.load(out), "dense_b0")
    target = next(f for f in entry["files"] if f["path"] == "dense_b0/model.opset15.onnx")
    web = json.loads((js.NODE_DIR / "package.json").read_text())["dependencies"]["onnxruntime-web"]

    def write(entries):
        (out / "dense_b0" / "profile.json").write_text(json.dumps({"profile_version": 1, "entries": entries}))

    row = {"runtime": "onnxruntime-web", "version": web, "batch_size": None, "file": "model.opset15.onnx",
           "sha256": target["sha256"], "settings": {"threads": 1, "graph_optimization_level": "extended"}}
    write([dict(row, version="1.16.3", file="model.onnx", sha256=entry["files"][0]["sha256"]), row])
    routes = {"/mirror/": out, "/page/ort/": ORT_DIST, "/page/": PAGE_DIR}
    with serve(routes) as (base, log):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&profile=dense_b0/profile.json")
    assert dom["status"] == "pass", dom
    assert dom["pin"] == target["sha256"] and [int(r[1]) for r in dom["rows"]] == expected_rows(out)[1]
    assert any(line.startswith("GET /mirror/dense_b0/model.opset15.onnx -> 200") for line in log), log
    assert not any(line.startswith("GET /mirror/dense_b0/model.onnx ") for line in log), log
    # a profile whose sha256 is not the file's: refused before a session is made
    write([dict(row, sha256="0" * 64)])
    with serve(routes) as (base, log):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&profile=dense_b0/profile.json")
    assert dom["status"] == "error" and "differs from the pinned" in dom["summary"], dom
    assert not any(".wasm" in line for line in log), log
    # no entry for this onnxruntime-web: the page says which versions the profile has
    write([dict(row, version="1.16.3")])
    with serve(routes) as (base, _):
        dom = browser.open(f"{base}/page/index.html?mirror={base}/mirror/&profile=dense_b0/profile.json")
    assert dom["status"] == "error" and f"no file for onnxruntime-web {web}" in dom["summary"], dom
    assert "1.16.3" in dom["summary"]
