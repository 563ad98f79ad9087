"""Issue 23 (redirect policy, permanent errors, memory) and issue 25 (messages, progress) for the
download client: real servers on 127.0.0.1 (one with TLS), real files, real terminals (a pty)."""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import onnx
import pytest
from hub_server import (  # noqa: F401 - fixtures
    MODEL,
    MODEL_PATH,
    MirrorServer,
    built,
    canary,
    copy_tree,
    hub_env,
    mirror,
    server,
)
from test_hub_promises import BOUND_S, manifest_of, no_locks_and_no_leftovers, one_line_error, write_manifest, zoo

from zoo import hub
from zoo.hub.external import external_data_files
from zoo.onnxio import locations, split_external


# --------------------------------------------------------------------------------------------------
# 23.14: no silent downgrade from https to http


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with cryptography), trusted through SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(ski, False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return str(d / "cert.pem"), str(d / "key.pem")


def test_a_redirect_from_https_to_http_is_refused_unless_allowed(mirror, server, tls_cert, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", tls_cert[0])
    secure = MirrorServer(mirror, tls=tls_cert).start()
    try:
        secure.set(MODEL_PATH, then=f"redirect:{server.url}{MODEL_PATH}")
        cache = tmp_path / "cache"
        r = zoo("pull", MODEL, "--from", secure.url, "--cache-dir", cache, env={"SSL_CERT_FILE": tls_cert[0]})
        one_line_error(r, 1, "from https to plain http", "ZOO_ALLOW_HTTP=1")
        assert server.count(MODEL_PATH) == 0 and secure.count(MODEL_PATH) == 1  # refused before connecting, once
        assert not cache.exists()
        monkeypatch.setenv("ZOO_ALLOW_HTTP", "1")
        res = hub.pull(MODEL, secure.url, cache_dir=cache)[0]
        assert server.count(MODEL_PATH) == 1 and res.status == "downloaded"
        rec = next(f for f in manifest_of(mirror)["models"][0]["files"] if f["path"] == MODEL_PATH)
        assert hashlib.sha256(res.path.read_bytes()).hexdigest() == rec["sha256"]
    finally:
        secure.close()


def test_an_untrusted_certificate_is_one_line_and_not_retried(mirror, tls_cert, tmp_path):
    secure = MirrorServer(mirror, tls=tls_cert).start()
    try:  # no SSL_CERT_FILE: the self-signed certificate is not trusted
        r = zoo("pull", MODEL, "--from", secure.url, "--cache-dir", tmp_path / "cache")
        one_line_error(r, 1, "certificate is not trusted")
        assert "retrying" not in r.stderr and not (tmp_path / "cache").exists()
    finally:
        secure.close()


# --------------------------------------------------------------------------------------------------
# 23.15 and 25.11: permanent errors are said at once, in words, and leave nothing behind


@pytest.mark.parametrize("location, words", [
    ("http://nonexistent.invalid/m.onnx", "cannot resolve host nonexistent.invalid"),
    ("http://[::1/m.onnx", "invalid URL"),
])
def test_permanent_redirect_failures_are_not_retried_and_leave_nothing(server, tmp_path, location, words):
    server.set(MODEL_PATH, then=f"redirect:{location}")
    cache = tmp_path / "home" / ".cache" / "zoo"  # the default, under a HOME without .cache
    r = zoo("pull", MODEL, "--from", server.url)
    one_line_error(r, 1, words)
    assert server.count(MODEL_PATH) == 1 and "retrying" not in r.stderr
    assert not (tmp_path / "home" / ".cache").exists(), "a failed first pull created the cache folder"
    no_locks_and_no_leftovers(cache)


def test_a_failed_pull_into_an_existing_cache_leaves_no_lock_files(server, tmp_path):
    cache = tmp_path / "cache"
    hub.pull(MODEL, server.url, cache_dir=cache)
    server.set("dense_b0/test_data_set_0/input_0.pb", then="status:404")
    with pytest.raises(hub.SourceError, match="404"):
        hub.pull(MODEL, server.url, with_test_data=True, cache_dir=cache)
    no_locks_and_no_leftovers(cache)
    assert (cache / "models" / MODEL / MODEL_PATH).is_file()


def test_a_host_and_port_without_a_scheme_gets_a_hint_and_an_unknown_host_is_named(tmp_path):
    r = zoo("pull", MODEL, "--from", "127.0.0.1:8000", cwd=tmp_path)  # no such folder there
    one_line_error(r, 2, "http://127.0.0.1:8000")
    r = zoo("models", "--from", "localhost:8000/zoo", cwd=tmp_path)
    one_line_error(r, 2, "http://localhost:8000/zoo")
    r = zoo("pull", MODEL, "--from", "http://nonexistent.invalid:8000/", "--cache-dir", tmp_path / "cache")
    one_line_error(r, 1, "cannot resolve host nonexistent.invalid")
    assert "Errno" not in r.stderr and "retrying" not in r.stderr


# --------------------------------------------------------------------------------------------------
# 23.7: a large model is hashed, checked and copied in bounded memory


def varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def _huge_model(built: Path, dest: Path, payload: int) -> dict:
    """dense_b0 plus a second copy of its graph field holding one ``payload``-byte initializer
    (protobuf merges the two: a valid ONNX file), written sparsely; returns its manifest record."""
    small = (built / MODEL_PATH).read_bytes()
    tensor_head = b"\x08\x01" + b"\x10\x02" + b"\x42\x04huge" + b"\x4a" + varint(payload)  # dims, dtype, name, raw_data
    init = b"\x2a" + varint(len(tensor_head) + payload) + tensor_head
    graph = b"\x3a" + varint(len(init) + payload) + init
    with open(dest, "wb") as f:
        f.write(small + graph)
        f.truncate(len(small) + len(graph) + payload)  # zeros, without writing them
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return {"bytes": dest.stat().st_size, "sha256": h.hexdigest()}


def test_a_large_model_is_pulled_in_bounded_memory(built, mirror, tmp_path, canary):
    src = copy_tree(mirror, tmp_path / "src")
    payload = 256 << 20
    new = _huge_model(built, src / MODEL_PATH, payload)
    m = manifest_of(src)
    rec = next(f for f in m["models"][0]["files"] if f["path"] == MODEL_PATH)
    rec.update(new)
    m["models"][0]["metadata"].update(model_bytes=new["bytes"], model_sha=new["sha256"])
    write_manifest(src, m)
    probe = ("import resource, sys; from zoo import hub; p = hub.load(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3]);"
             "hub.load(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3]);"  # again: the cached copy re-verified
             "print(p, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
             "next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')))")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", probe, MODEL, str(src), str(tmp_path / "cache")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 120
    path, _, peak_kib = r.stdout.split()  # ru_maxrss keeps the parent's peak across fork+exec; VmHWM is ours
    assert Path(path).stat().st_size == new["bytes"]
    peak = int(peak_kib) * 1024
    assert peak < payload * 0.45, f"peak RSS {peak / 2**20:.0f} MiB for a {payload / 2**20:.0f} MiB model"


def _walk(data: bytes, listed: list[str]) -> list[str]:
    import io

    entry = {"files": [{"path": f"x/{loc}"} for loc in listed]}
    return [r["path"][2:] for r in external_data_files(io.BytesIO(data), "x/model.onnx", entry)]


def test_the_streamed_wire_walk_finds_what_onnx_finds(built):
    """The stream walk's external-data locations are onnx's own: a real model in both forms, and a
    tensor whose two copies protobuf merges (the location in one, ``EXTERNAL`` in the other)."""
    proto = onnx.load_model(str(built / MODEL_PATH))
    inline = proto.SerializeToString()
    split, _ = split_external(proto, "model.onnx.data")
    assert locations(onnx.load_model_from_string(split)) == ["model.onnx.data"]
    assert _walk(inline, []) == [] and _walk(split, ["model.onnx.data"]) == ["model.onnx.data"]

    a1 = onnx.AttributeProto(name="value", type=onnx.AttributeProto.TENSOR,
                             t=onnx.TensorProto(name="c", data_type=1, dims=[1]))
    a1.t.external_data.add(key="location", value="../../outside/secret")
    a2 = onnx.AttributeProto(t=onnx.TensorProto(data_location=onnx.TensorProto.EXTERNAL))
    attr = a1.SerializeToString() + a2.SerializeToString()  # one attribute, its tensor given twice
    node = onnx.NodeProto(op_type="Constant", output=["c"]).SerializeToString() + b"\x2a" + varint(len(attr)) + attr
    graph = onnx.GraphProto(name="g").SerializeToString() + b"\x0a" + varint(len(node)) + node
    model = onnx.ModelProto(ir_version=9).SerializeToString() + b"\x3a" + varint(len(graph)) + graph
    assert locations(onnx.load_model_from_string(model)) == ["../../outside/secret"]  # what onnx sees
    with pytest.raises(hub.UnsafePathError, match="inside the model's folder"):
        _walk(model, [])


@pytest.mark.parametrize("data", [b"\x00" * 64, b"\xff" * 64, b"\x3a\xff\xff\xff\xff\x0f", b"\x0a\x02hi"])
def test_the_wire_walk_refuses_what_is_not_onnx_in_one_line(data):
    with pytest.raises(hub.IntegrityError, match="not a readable ONNX model"):
        _walk(data, [])


# --------------------------------------------------------------------------------------------------
# 25.13: a bar on a terminal, lines in a log


def _pull_on_a_pty(args: list[str], env: dict) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    out = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < BOUND_S:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(timeout=30), out.decode(errors="replace")


def test_pull_shows_a_bar_on_a_terminal_and_plain_lines_in_a_log(server, tmp_path):
    args = [sys.executable, "-m", "zoo", "pull", MODEL, "--from", server.url, "--cache-dir"]
    code, tty = _pull_on_a_pty(args + [str(tmp_path / "c1")], dict(os.environ))
    assert code == 0, tty
    assert "100%" in tty and "\r" in tty and "B/s" in tty and MODEL_PATH in tty, tty
    r = zoo(*args[3:], tmp_path / "c2")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "%|" not in r.stderr and f"fetching {MODEL_PATH}" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr  # one line per file, no stream of updates
