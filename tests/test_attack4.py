"""Issue 32: the promises attacked a fourth time. Real FIFOs, /dev/zero, sparse files and sockets
as small inputs; a hostile OCI registry on 127.0.0.1; links planted where exports write; real
SIGINTs during start-up; OpenVINO with HOME in a temporary folder. Every run's wall time is
asserted as a bound, and a canary folder outside must survive where anything is written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
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
from zoo.cli import cli
from zoo.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
# The suite's one subprocess runner (wall time asserted below its bound) and one-line error check.
from test_hub_promises import BOUND_S, zoo as run_zoo, one_line_error as one_line  # noqa: E402


# --------------------------------------------------------------------------------------------------
# 32.1 and 32.4: FIFOs, /dev/zero, sockets, folders and huge sparse files as small inputs


@pytest.fixture
def specials(tmp_path):
    """One of each thing that is not a small regular file."""
    out = tmp_path / "specials"
    out.mkdir()
    os.mkfifo(out / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(out / "socket"))
    with open(out / "sparse", "wb") as f:
        f.truncate(3 << 30)  # 3 GB, no block written
    (out / "folder").mkdir()
    try:
        yield {"fifo": out / "fifo", "dev-zero": Path("/dev/zero"), "socket": out / "socket",
               "sparse-3GB": out / "sparse", "folder": out / "folder"}
    finally:
        sock.close()


@pytest.mark.timeout(30, func_only=True)
def test_read_input_refuses_what_is_not_a_small_regular_file_at_once(specials, tmp_path):
    import resource

    from zoo.fsutil import read_input

    words = {"fifo": "is a FIFO", "dev-zero": "is a device", "socket": "not a regular file",
             "sparse-3GB": "larger than 1,024 bytes", "folder": "is a folder"}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for kind, path in specials.items():
        t0 = time.monotonic()
        with pytest.raises(InputError, match=words[kind]) as e:
            read_input(path, 1024, "lockfile")
        assert time.monotonic() - t0 < 2, kind
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 * 1024, "a special file was read whole"
    with pytest.raises(InputError, match="does not exist"):
        read_input(tmp_path / "nowhere", 1024, "lockfile")
    ok = tmp_path / "ok"
    ok.write_bytes(b"x" * 1024)
    assert read_input(ok, 1024, "lockfile") == b"x" * 1024
    ok.write_bytes(b"x" * 1025)  # one byte over
    with pytest.raises(InputError, match="larger than 1,024 bytes"):
        read_input(ok, 1024, "lockfile")


def _small_input_commands(mirror, built, tmp_path, bad: Path) -> dict[str, tuple[list, dict]]:
    """Every command and setting that reads a small file a user names, given ``bad``."""
    cache, config = tmp_path / "cache", tmp_path / "config"
    config.mkdir(exist_ok=True)
    trust_json = config / "trust.json"
    if os.path.lexists(trust_json):
        trust_json.unlink()
    trust_json.symlink_to(bad)  # the trust store's own file
    return {
        "pull --lock": (["pull", "--lock", bad, "--cache-dir", cache], {}),
        "pull --trust": (["pull", MODEL, "--from", mirror, "--trust", bad, "--cache-dir", cache], {}),
        "ZOO_TRUST": (["pull", MODEL, "--from", mirror, "--cache-dir", cache], {"ZOO_TRUST": str(bad)}),
        "trust.json": (["trust", "list"], {"ZOO_CONFIG": str(config)}),
        "publish --labels": (["publish", "--artifacts", built, "--to", tmp_path / "m1", "--labels", bad], {}),
        "publish --sign-key": (["publish", "--artifacts", built, "--to", tmp_path / "m2", "--sign-key", bad], {}),
        "build --labels": (["build", MODEL, "--no-verify", "--input-dim", "64", "--artifacts", tmp_path / "art",
                            "--labels", bad], {}),
    }


@pytest.mark.timeout(180, func_only=True)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_dev_zero_as_any_small_input_is_one_line_at_once(mirror, built, tmp_path, specials, canary, kind):
    """A FIFO blocked these commands forever, /dev/zero ran them out of memory (exit 4): each is now
    one line (exit 2; the trust store, the zoo's own file, exit 1 as damaged), well within the bound,
    and nothing is published or built."""
    cases = _small_input_commands(mirror, built, tmp_path, specials[kind])
    t0 = time.monotonic()
    procs = {k: subprocess.Popen([sys.executable, "-m", "zoo", *map(str, args)], env={**os.environ, **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (args, env) in cases.items()}
    try:
        outs = {k: p.communicate(timeout=120) for k, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
    elapsed = time.monotonic() - t0
    assert elapsed < 90, f"seven refusals took {elapsed:.0f} s together"
    for k, p in procs.items():
        r = subprocess.CompletedProcess(p.args, p.returncode, *outs[k])
        if k == "trust.json":  # the zoo's own store, planted: damaged, exit 1 (never "no trust"), link not followed
            one_line(r, 1, "trust store", "is a link")
        else:
            one_line(r, 2, "FIFO" if kind == "fifo" else "device")
    published = [p for m in ("m1", "m2", "art") for p in (tmp_path / m).rglob("*")]
    assert published == [], published  # (publish --sign-key makes its empty --to folder first: the lead's rewrite)


@pytest.mark.timeout(60, func_only=True)
def test_a_3_gb_sparse_lockfile_is_refused_before_it_is_read(tmp_path, specials):
    r = run_zoo("pull", "--lock", specials["sparse-3GB"], "--cache-dir", tmp_path / "cache")
    one_line(r, 2, "larger than", "refusing to read it")


# --------------------------------------------------------------------------------------------------
# 32.2 and 32.6: a hostile OCI registry


def _oci_layout(root: Path, manifest_blob: bytes) -> tuple[str, str]:
    """A registry's answers as files: the OCI manifest of ``zoo/dense_b0`` with a manifest.json
    layer holding ``manifest_blob``. Returns (the OCI manifest's path, the blob's path)."""
    digest = "sha256:" + hashlib.sha256(manifest_blob).hexdigest()
    oci = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "layers": [{"mediaType": "application/json", "digest": digest, "size": len(manifest_blob),
                       "annotations": {"org.opencontainers.image.title": "manifest.json"}}]}
    mpath, bpath = "v2/zoo/dense_b0/manifests/latest", f"v2/zoo/dense_b0/blobs/{digest}"
    for rel, data in ((mpath, json.dumps(oci).encode()), (bpath, manifest_blob)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return mpath, bpath


def _trickle_headers(send, body, stop):
    send(b"HTTP/1.1 200 OK\r\n")
    while not stop.wait(0.5):  # a header line that never ends, two bytes a second
        send(b"aa")


def _trickle_body(send, body, stop):
    send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(body))
    for i in range(len(body)):  # a byte a second: never done within the deadline
        if stop.wait(1.0):
            return
        send(body[i:i + 1])


@pytest.mark.timeout(90, func_only=True)
@pytest.mark.parametrize("attack", ["headers", "body"])
def test_an_oci_pull_ends_within_the_commands_deadline_whatever_the_registry_trickles(mirror, tmp_path, attack,
                                                                                      canary):
    """ZOO_DEADLINE bounds the whole OCI pull, headers included: one deadline for the command (the
    OCI manifest takes 2 s to arrive, then the next blob trickles: a deadline per request would
    end 2 s later), enforced by a watchdog on the registry's sockets."""
    root = tmp_path / "registry"
    mpath, bpath = _oci_layout(root, (mirror / "manifest.json").read_bytes())
    first = []

    def slow_manifest(send, body, stop):  # the whole answer, in ten pieces over 2 s
        first.append(time.monotonic())
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        step = len(reply) // 10 + 1
        for i in range(0, len(reply), step):
            send(reply[i:i + step])
            stop.wait(0.2)

    def headers(send, body, stop):
        first.append(time.monotonic())
        _trickle_headers(send, body, stop)

    attacks = {mpath: headers} if attack == "headers" else {mpath: slow_manifest, bpath: _trickle_body}
    with RawServer(root, attacks) as srv:
        port = srv.sock.getsockname()[1]
        r = run_zoo("pull", MODEL, "--from", f"oci://127.0.0.1:{port}/zoo/dense_b0", "--cache-dir",
                    tmp_path / "cache", env={"ZOO_DEADLINE": "4", "ZOO_SPEED_LIMIT": "0"})
        ended = time.monotonic()
    one_line(r, 1, "deadline of 4 s", "ZOO_DEADLINE")
    assert first, "the registry was never asked"
    assert ended - first[0] < 4 + 1.5, f"the pull ended {ended - first[0]:.1f} s after its first request"
    assert not (tmp_path / "cache" / "models").exists()


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("shape", ["nested", "wide", "odd-types"])
def test_a_hostile_oci_manifest_is_one_line(tmp_path, shape):
    root = tmp_path / "registry"
    mpath, _ = _oci_layout(root, b"{}")
    hostile = {"nested": b"[" * 100_000 + b"]" * 100_000,
               "wide": json.dumps({"layers": [{"a": 1}] * 300_000}).encode(),
               "odd-types": json.dumps({"layers": {"annotations": []}}).encode()}[shape]
    (root / mpath).write_bytes(hostile)
    with RawServer(root, {}) as srv:
        port = srv.sock.getsockname()[1]
        r = run_zoo("pull", MODEL, "--from", f"oci://127.0.0.1:{port}/zoo/dense_b0", "--cache-dir", tmp_path / "c")
    one_line(r, 1, {"nested": "nested deeper than 32", "wide": "more than", "odd-types": "not a zoo model artifact"}[shape])


# --------------------------------------------------------------------------------------------------
# 32.7: a version in unicode digits


@pytest.mark.parametrize("ref", ["dense_b0@²", "dense_b0@٣", "dense_b0@①", "dense_b0@１"])
def test_a_version_in_unicode_digits_is_bad_input(mirror, tmp_path, ref):
    from zoo.hub.release import parse_ref

    with pytest.raises(InputError, match="after '@'"):
        parse_ref(ref)
    assert parse_ref("dense_b0@12") == ("dense_b0", 12)
    r = CliRunner().invoke(cli, ["pull", ref, "--from", str(mirror), "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert r.stderr.strip().splitlines()[-1].startswith("Error: zoo pull: ") and "after '@'" in r.stderr
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------------------------------
# 32.9: exports never write through a link planted at TO/NAME


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("fmt, folder", [("hf", MODEL), ("triton", f"{MODEL}_fp32")])
@pytest.mark.parametrize("plant", ["link", "dangling"])
def test_an_export_never_writes_through_a_link_at_the_model_folder(built, tmp_path, canary, fmt, folder, plant):
    to = tmp_path / "to"
    to.mkdir()
    (to / folder).symlink_to(canary if plant == "link" else tmp_path / "nowhere")
    args = ["export", fmt, "--artifacts", str(built), "--to", str(to)] + (["--precision", "fp32"] if fmt == "triton" else [])
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, args)
    assert time.monotonic() - t0 < 60
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1].startswith(f"Error: zoo export {fmt}: ") and "link" in r.output
    assert sorted(p.name for p in to.iterdir()) == [folder] and (to / folder).is_symlink()
    # the real folder is written as before
    (to / folder).unlink()
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (to / folder).is_dir() and not (to / folder).is_symlink()


# --------------------------------------------------------------------------------------------------
# 32.12: Ctrl-C during start-up


def test_the_command_words_of_an_early_interrupt_match_the_cli():
    from zoo.cli import GROUPS, command_words

    groups = {name for name, c in cli.commands.items() if hasattr(c, "commands")}
    assert groups == set(GROUPS)
    assert command_words(["cache", "clear", "dense_b0"]) == "cache clear"
    assert command_words(["pull", "dense_b0", "--from", "x"]) == "pull"
    assert command_words(["--version"]) == ""


@pytest.mark.timeout(120, func_only=True)
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path):
    """A real SIGINT at several moments of the start-up (Python itself is up: the child says so
    before it imports the zoo), repeated: always ``Error: zoo pull: interrupted``, exit 130."""
    stall = lambda send, body, stop: stop.wait(60)  # noqa: E731 - a registry that never answers
    code = ("import sys; sys.stderr.write('up\\n'); sys.stderr.flush(); sys.argv[0] = 'zoo'; "
            "from zoo.cli import main; main()")
    with RawServer(tmp_path, {"manifest.json": stall}) as srv:
        for delay in (0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.9, 0.01, 0.1, 0.3):
            p = subprocess.Popen([sys.executable, "-c", code, "pull", MODEL, "--from", srv.url, "--cache-dir",
                                  str(tmp_path / "c")], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert p.stderr.readline() == "up\n"
                time.sleep(delay)
                p.send_signal(signal.SIGINT)
                out, err = p.communicate(timeout=45)  # zoo.interrupt's watchdog ends a stuck one at 30 s
            finally:
                p.kill()
            assert p.returncode == 130 and "Traceback" not in err, (delay, p.returncode, err)
            assert err.strip().splitlines()[-1] == "Error: zoo pull: interrupted", (delay, err)


# --------------------------------------------------------------------------------------------------
# 32.13: OpenVINO's telemetry writes nothing in $HOME


@pytest.mark.timeout(120, func_only=True)
def test_openvino_writes_nothing_in_home(built, tmp_path):
    """What `zoo verify --runtimes openvino` runs (the OpenVINO runner on a model), in a process
    whose HOME is a temporary folder: the folder stays empty (openvino's import wrote
    $HOME/intel/openvino_ga_cid and $HOME/intel/stats)."""
    home = tmp_path / "home"
    home.mkdir()
    code = ("import sys, numpy as np; from zoo.verify.backends import _OpenVinoRunner; "
            "r = _OpenVinoRunner(open(sys.argv[1], 'rb').read()); "
            "print(r.run({r.inputs[0]: np.zeros((1, 64), np.float32)})[r.outputs[0]].shape); "
            "import openvino_telemetry")  # imported normally afterwards: the block was for openvino's import only
    r = subprocess.run([sys.executable, "-c", code, str(built / MODEL_PATH)], capture_output=True, text=True,
                       env={**os.environ, "HOME": str(home)}, timeout=90)
    assert r.returncode == 0, r.stderr
    assert list(home.rglob("*")) == [], "OpenVINO wrote in $HOME"


# --------------------------------------------------------------------------------------------------
# 32.14: zoo info never holds the model's weights


@pytest.mark.timeout(120, func_only=True)
def test_zoo_info_never_reads_the_initializers_data_into_memory(tmp_path):
    """A model with one 32 MiB tensor: describing it allocates (in Python) under a tenth of the file,
    where reading the file whole allocated all of it; the checker reads the file itself (C++)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = 8 << 20
    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    size = path.stat().st_size
    small = tmp_path / "small.onnx"
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), opset_imports=[helper.make_opsetid("", 17)]), small)
    # one small model first: the modules describe imports are not counted
    code = ("import json, sys, tracemalloc; from zoo.hub.inspect import describe; describe(sys.argv[2]); "
            "tracemalloc.start(); d = describe(sys.argv[1]); print(json.dumps([tracemalloc.get_traced_memory()[1], d['params'], "
            "d['file_bytes'], d['sha256']]))")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(small)], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    peak, params, nbytes, sha = json.loads(r.stdout)
    assert (params, nbytes, sha) == (n, size, hashlib.sha256(path.read_bytes()).hexdigest())
    assert peak < size / 10, f"describe allocated {peak:,} bytes for a {size:,}-byte model"


def test_the_model_without_its_data_keeps_everything_but_the_data(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.onnxwire import without_initializer_data

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])  # float_data, not raw
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], doc_string="doc")
    helper.set_model_props(m, {"k": "v"})
    light = onnx.load_from_string(without_initializer_data(m.SerializeToString()))
    assert [(t.name, list(t.dims), t.data_type) for t in light.graph.initializer] == [("w", [4, 3], 1), ("b", [3], 1)]
    assert all(not t.raw_data and not t.float_data for t in light.graph.initializer)
    full = onnx.load_from_string(m.SerializeToString())
    for t in full.graph.initializer:
        t.ClearField("raw_data")
        t.ClearField("float_data")
    assert light == full  # the rest, node for node and field for field
    with pytest.raises(ValueError):
        without_initializer_data(b"\x0a\xff\xff")


# --------------------------------------------------------------------------------------------------
# 32.15: bad names are refused before any note or work


def test_zoo_verify_refuses_an_unknown_name_before_any_note(built):
    r = CliRunner().invoke(cli, ["verify", "dense_b9", "--artifacts", str(built)],
                           env={"ZOO_NODE": "/nonexistent/node"})  # the Node.js runtime is missing: a note
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[-1]], r.stderr
    assert "unknown model 'dense_b9'" in r.stderr and "note:" not in r.stderr
    r = CliRunner().invoke(cli, ["verify", "dense_b0", "--artifacts", str(built), "--runtimes", "deno"])
    assert r.exit_code == 2 and "note:" not in r.stderr


# --------------------------------------------------------------------------------------------------
# 32.18: the mechanisms no test held: the copy-time sha256, the reserved temporary name, the deadline
# of a local source while it streams


def test_a_copy_whose_bytes_differ_from_the_record_is_never_renamed_into_place(tmp_path, canary):
    """``copy_verified`` checks what it copied (a file may change between its check and its copy):
    bytes of the right size but another sha256 leave nothing, not even a temporary file."""
    from zoo.fsutil import TMP_PREFIX
    from zoo.hub.config import IntegrityError
    from zoo.hub.paths import Dir, copy_verified

    src = tmp_path / "src.bin"
    src.write_bytes(b"a" * 100)
    dest = tmp_path / "dest"
    other = {"path": "m/x.bin", "bytes": 100, "sha256": hashlib.sha256(b"b" * 100).hexdigest()}
    with Dir.open_root(dest, "test", create=True) as d, open(src, "rb") as fh:
        with pytest.raises(IntegrityError, match="changed while it was copied"):
            copy_verified(fh, d, "m/x.bin", other, tag="test")
    assert not (dest / "m" / "x.bin").exists() and list(dest.rglob(TMP_PREFIX + "*")) == []
    same = dict(other, sha256=hashlib.sha256(b"a" * 100).hexdigest())
    with Dir.open_root(dest, "test") as d, open(src, "rb") as fh:
        copy_verified(fh, d, "m/x.bin", same, tag="test")
    assert (dest / "m" / "x.bin").read_bytes() == b"a" * 100


def test_a_listed_file_with_the_zoos_temporary_name_is_refused(mirror, tmp_path):
    """A file named like the zoo's own temporary files (``.zoo-tmp-*``) could be swept away as a
    leftover or collide with a write in progress: a manifest listing one is refused, although the
    file is there with the listed bytes."""
    src = copy_tree(mirror, tmp_path / "src")
    m = json.loads((src / "manifest.json").read_text())
    rec = next(f for f in m["models"][0]["files"] if f["path"] == TEST_IN)
    reserved = f"{MODEL}/test_data_set_0/.zoo-tmp-input_1.pb"
    (src / reserved).write_bytes((src / TEST_IN).read_bytes())
    m["models"][0]["files"].append(dict(rec, path=reserved))
    (src / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(hub.UnsafePathError, match="temporary files"):
        hub.pull(MODEL, str(src), with_test_data=True, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "models").exists()


def test_the_deadline_bounds_a_local_source_while_it_streams(mirror, tmp_path):
    """A folder source streams under the pull's deadline too (a slow or stalled file system is
    given up at the deadline, not waited for): a file streamed after its deadline is refused."""
    import tempfile

    from zoo.hub.config import Deadline, SourceError
    from zoo.hub.source import resolve_source

    src = resolve_source(str(mirror))
    rec = next(f for f in json.loads((mirror / "manifest.json").read_text())["models"][0]["files"]
               if f["path"] == MODEL_PATH)
    spent = Deadline(0.05)
    time.sleep(0.1)
    with tempfile.TemporaryFile() as f:
        with pytest.raises(SourceError, match="deadline of 0.05 s"):
            src.fetch_into(rec, f, budget=spent)
        src.fetch_into(rec, f, budget=Deadline(30))
        f.seek(0)
        assert hashlib.sha256(f.read()).hexdigest() == rec["sha256"]


# --------------------------------------------------------------------------------------------------
# 32.19: a lockfile whose version the source no longer serves is refused


@pytest.mark.timeout(60, func_only=True)
def test_a_source_that_changed_since_the_lockfile_is_refused(mirror, tmp_path):
    from zoo.hub.config import IntegrityError
    from zoo.hub.lockfile import check_entry, lock_record, write_lock

    entry = json.loads((mirror / "manifest.json").read_text())["models"][0]
    pinned = lock_record(entry)
    check_entry(entry, pinned, "here")  # the same version: accepted
    for change in ("sha256", "bytes", "extra", "digest"):
        other = json.loads(json.dumps(pinned))
        if change == "sha256":
            other["files"][0]["sha256"] = "0" * 64
        elif change == "bytes":
            other["files"][0]["bytes"] += 1
        elif change == "extra":
            other["files"].append(dict(other["files"][0], path=f"{MODEL}/more.bin"))
        else:
            other["digest"] = "sha256:" + "0" * 64
        with pytest.raises(IntegrityError, match="is not the locked"):
            check_entry(entry, other, "here")
    # end to end: a lockfile that pins the mirror's version by its digest, but other bytes for a file
    lock = tmp_path / "zoo.lock"
    data = write_lock(lock, str(mirror), [entry])
    rec = next(f for f in data["models"][MODEL]["files"] if f["path"] == TEST_IN)
    rec["sha256"] = hashlib.sha256(b"other test input").hexdigest()
    lock.write_text(json.dumps(data))
    r = run_zoo("pull", "--lock", lock, "--with-test-data", "--cache-dir", tmp_path / "cache")
    one_line(r, 1, "is not the locked")
    assert not (tmp_path / "cache" / "models").exists()
