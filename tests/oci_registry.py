"""A real OCI registry on 127.0.0.1: Debian's ``docker-registry`` (the CNCF Distribution registry),
started on a free port with its storage in a temporary folder, stopped afterwards."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.storage = self.root / "storage"
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "Registry":
        self.storage.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "registry.log", "wb"))
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob (the filesystem driver's layout)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


class ReferrersRegistry:
    """A registry with the OCI 1.1 referrers API in front of Debian's (CNCF Distribution 2.8,
    which has none): every request is passed to it unchanged, except that a manifest pushed with a
    ``subject`` is recorded and answered with ``OCI-Subject`` (the spec's "this registry indexes
    subjects"), and ``GET /v2/NAME/referrers/DIGEST[?artifactType=T]`` answers the image index of
    what was recorded, as the distribution spec 1.1 says."""

    def __init__(self, backend: Registry):
        import http.server
        import threading

        self.backend = backend
        self.referrers: dict[tuple[str, str], list[dict]] = {}
        self.api_calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, body: bytes | None):
                import http.client

                conn = http.client.HTTPConnection(outer.backend.host, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                headers["Host"] = outer.host
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                return resp.status, resp.getheaders(), data

            def _reply(self, status, headers, data, extra=None):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else None

            def do_GET(self):
                import json
                import re
                import urllib.parse

                path, _, query = self.path.partition("?")
                m = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})", path)
                if m is None:
                    return self._reply(*self._forward(None))
                outer.api_calls += 1
                want = urllib.parse.parse_qs(query).get("artifactType", [None])[0]
                found = [d for d in outer.referrers.get((m.group(1), m.group(2)), [])
                         if want is None or d.get("artifactType") == want]
                data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                   "manifests": found}).encode()
                self._reply(200, [("Content-Type", "application/vnd.oci.image.index.v1+json")], data,
                            {"OCI-Filters-Applied": "artifactType"} if want else None)

            do_HEAD = do_DELETE = lambda self: self._reply(*self._forward(None))  # noqa: E731

            def do_POST(self):
                self._reply(*self._forward(self._body()))

            do_PATCH = do_POST

            def do_PUT(self):
                import hashlib
                import json
                import re

                body = self._body()
                status, headers, data = self._forward(body)
                m = re.fullmatch(r"/v2/(.+)/manifests/[^/?]+", self.path)
                extra = None
                if m and status == 201 and body:
                    doc = json.loads(body)
                    subject = doc.get("subject") if isinstance(doc, dict) else None
                    if isinstance(subject, dict):
                        desc = {"mediaType": doc.get("mediaType"), "size": len(body),
                                "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                                "artifactType": doc.get("artifactType") or doc.get("config", {}).get("mediaType"),
                                "annotations": doc.get("annotations", {})}
                        outer.referrers.setdefault((m.group(1), subject["digest"]), []).append(desc)
                        extra = {"OCI-Subject": subject["digest"]}
                self._reply(status, headers, data, extra)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "ReferrersRegistry":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
