"""Local files attacked: planted links and FIFOs in an artifacts folder, hostile weights headers,
hostile models given to `zoo info`, and Ctrl-C. A canary outside must survive; what could block
runs in a subprocess under a wall-clock bound."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from zoo import hub
from zoo.builder.commit import Staging
from zoo.builder.lock import LOCK_NAME, artifacts_lock
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.fsutil import leftover_temporaries
from zoo.hub.inspect import MAX_ENTRIES, describe
from zoo.onnxio import model_files

from conftest import ROOT, zoo_cmd

runner = CliRunner()


def one_line_error(r, command: str) -> str:
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"Error: zoo {command}: "), r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


# -- the artifacts folder's lock ------------------------------------------------------------------

@pytest.mark.parametrize("plant", ["link to a file outside", "dangling link", "fifo", "folder"])
def test_the_lock_never_follows_or_blocks_on_what_is_planted_in_its_name(tmp_path, plant):
    folder, canary = tmp_path / "artifacts", tmp_path / "canary"
    folder.mkdir()
    canary.write_text("outside")
    lock = folder / LOCK_NAME
    if plant == "link to a file outside":
        lock.symlink_to(canary)
    elif plant == "dangling link":
        lock.symlink_to(tmp_path / "nothing-here")
    elif plant == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    done = threading.Event()

    def hold():
        with artifacts_lock(folder, what="the test"):
            if plant != "folder":  # the holder's note replaced the plant as a name
                assert lock.is_file() and not lock.is_symlink() and "the test" in lock.read_text()
        done.set()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert done.wait(20), "the lock blocked"
    assert canary.read_text() == "outside" and sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "canary"]
    assert os.path.lexists(lock) == (plant == "folder")  # the note is removed on release: nothing to publish
    assert leftover_temporaries(folder) == []


def test_a_waiter_reads_the_holders_note_without_following_a_link(tmp_path):
    """A second process waits on the folder (not on a file) and names the holder from its note."""
    folder = tmp_path / "artifacts"
    with artifacts_lock(folder, what="the test's holder"):
        p = subprocess.Popen([sys.executable, "-c", "import sys; from zoo.builder.lock import artifacts_lock\n"
                              "with artifacts_lock(sys.argv[1], lambda m: print(m, file=sys.stderr, flush=True)): pass",
                              str(folder)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        line = p.stderr.readline()
        assert line.startswith("waiting for pid ") and "the test's holder" in line, line
        assert p.poll() is None
    assert p.wait(timeout=60) == 0
    assert not os.path.lexists(folder / LOCK_NAME)


# -- links where a build writes -------------------------------------------------------------------

def test_a_build_into_a_model_folder_that_is_a_link_is_refused_before_any_work(tmp_path):
    out, outside = tmp_path / "artifacts", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "dense_b0").symlink_to(outside, target_is_directory=True)
    t = time.monotonic()
    r = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--no-verify", "--no-bench",
                            "--artifacts", str(out)])
    assert r.exit_code == 1
    assert "is a link or not a folder; refusing to write through it" in one_line_error(r, "build")
    assert time.monotonic() - t < 30 and list(outside.iterdir()) == []
    assert not (out / "manifest.json").exists()


def test_staging_never_writes_through_a_linked_subfolder(tmp_path):
    out, outside = tmp_path / "artifacts", tmp_path / "outside"
    (out / "dense_b0").mkdir(parents=True)
    outside.mkdir()
    (out / "dense_b0" / "test_data_set_0").symlink_to(outside, target_is_directory=True)
    staging = Staging(out)
    with pytest.raises(ZooError, match="is a link or not a folder"):
        staging.add("dense_b0/test_data_set_0/input_0.pb", b"x")
    staging.abort()
    assert list(outside.iterdir()) == []


# -- FIFOs named like a manifest or a model: zoo verify refuses them without blocking --------------

@pytest.mark.parametrize("fifo", ["manifest.json", "dense_b0/model.onnx"])
def test_zoo_verify_refuses_a_fifo_in_one_line_without_blocking(small_build, tmp_path, fifo):
    work = tmp_path / "work"
    shutil.copytree(small_build, work)
    (work / fifo).unlink()
    os.mkfifo(work / fifo)
    t = time.monotonic()
    r = subprocess.run(zoo_cmd("verify", "dense_b0", "--artifacts", str(work), "--no-record", "--providers", "cpu"),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert time.monotonic() - t < 300
    assert r.returncode == 1, r.stderr
    assert "not a regular file" in one_line_error(r, "verify")


# -- hostile safetensors headers: bad input, one line ----------------------------------------------

def safetensors(header, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def tensor(dtype="F32", shape=(1,), offsets=(0, 4)):
    return {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets) if isinstance(offsets, tuple)
                  else offsets}}


HOSTILE_WEIGHTS = {
    "nested 100,000 deep": safetensors(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "dtype F4": safetensors(tensor("F4", offsets=(0, 1)), b"\0"),
    "dtype F8_E8M0": safetensors(tensor("F8_E8M0", offsets=(0, 1)), b"\0"),
    "dtype F8_E4M3": safetensors(tensor("F8_E4M3", offsets=(0, 1)), b"\0"),
    "data_offsets [0, null]": safetensors(tensor(offsets=[0, None]), b"\0" * 4),
    "data_offsets 'ab'": safetensors(tensor(offsets="ab"), b"\0" * 4),
    "a header that is a list": safetensors(b"[1, 2]      "),
}


@pytest.mark.parametrize("case", list(HOSTILE_WEIGHTS))
def test_hostile_safetensors_headers_are_bad_input_in_one_line(tmp_path, case):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(HOSTILE_WEIGHTS[case])
    r = runner.invoke(cli, ["build", "dense_b0", "--input-dim", "64", "--weights", str(weights), "--no-verify",
                            "--no-bench", "--artifacts", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert str(weights) in one_line_error(r, "build")
    assert not (tmp_path / "out" / "manifest.json").exists()


# -- zoo info ----------------------------------------------------------------------------------------

def _graph_model(inputs=("x",), inits=(), name_bytes: bytes | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, ["batch", 512])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 512])
    nodes = [helper.make_node("Add", [inputs[0], "w"], ["y"])]
    w = onnx.numpy_helper.from_array(np.arange(512, dtype=np.float32), "w")
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, *inits]),
                          opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def test_zoo_info_json_with_a_name_that_is_not_utf8(tmp_path):
    raw = _graph_model(inputs=("xq",)).SerializeToString().replace(b"xq", b"\xff\xfe")
    path = tmp_path / "m.onnx"
    path.write_bytes(raw)
    r = runner.invoke(cli, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["inputs"][0]["name"] == "\ufffd\ufffd"


def test_zoo_info_reads_external_data_from_any_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    for rel, data in model_files(_graph_model(), "model.onnx", True).items():
        (folder / rel).write_bytes(data)
    monkeypatch.chdir(tmp_path)  # not the model's folder
    info = describe(folder / "model.onnx")
    assert info["external_data"] == [{"location": "model.onnx.data", "present": True,
                                      "bytes": (folder / "model.onnx.data").stat().st_size}]


def test_zoo_info_refuses_external_data_through_a_linked_folder(tmp_path):
    folder, outside = tmp_path / "model", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "passwd").write_bytes(b"secret" * 1000)
    files = model_files(_graph_model(), "model.onnx", True)
    (folder / "model.onnx").write_bytes(files["model.onnx"].replace(b"model.onnx.data", b"sub/passwd.data"))
    (outside / "passwd.data").write_bytes(files["model.onnx.data"])
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    r = runner.invoke(cli, ["info", str(folder / "model.onnx"), "--json"])
    assert r.exit_code in (1, 2)
    assert "goes through a link" in one_line_error(r, "info") and r.stdout == ""


def _many_initializers(n: int) -> bytes:
    """A model with ``n`` one-float initializers, written on the wire (building them as protobuf
    objects would cost what the test bounds)."""
    base = _graph_model().SerializeToString()
    one = onnx.numpy_helper.from_array(np.ones(1, np.float32), "i").SerializeToString()
    field = bytes([5 << 3 | 2, len(one)]) + one
    m = onnx.ModelProto()
    m.ParseFromString(base)
    graph = m.graph.SerializeToString() + field * n

    def varint(v):
        out = bytearray()
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        return bytes(out + bytes([v]))
    m.ClearField("graph")
    return m.SerializeToString() + bytes([7 << 3 | 2]) + varint(len(graph)) + graph


def test_zoo_info_on_a_model_with_too_many_initializers_is_bounded_in_memory_and_time(tmp_path):
    path = tmp_path / "many.onnx"
    path.write_bytes(_many_initializers(4 * MAX_ENTRIES))  # 6 MB; parsed whole: 301 MB and 3.4 s
    t = time.monotonic()
    # Measured by a small parent: a child forked from this (large) test process would report this
    # process's peak as its own (Linux keeps the peak across exec).
    r = subprocess.run([sys.executable, "-c", MEASURE, *zoo_cmd("info", str(path))], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    elapsed = time.monotonic() - t
    code, peak_kb = json.loads(r.stdout)
    assert code == 1, r.stderr
    assert r.stderr.count("\n") == 1 and f"more than {MAX_ENTRIES:,} nodes and tensors" in r.stderr
    assert peak_kb < 150_000, f"peak RSS {peak_kb} KB"  # unbounded: about 600 MB here
    assert elapsed < 60


MEASURE = """
import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))
"""


def test_zoo_info_takes_a_model_name_and_shows_both_parameter_counts(small_build, tmp_path, monkeypatch):
    r = runner.invoke(cli, ["info", "dense_b0", "--artifacts", str(small_build)])
    assert r.exit_code == 0, r.output
    params = json.loads((small_build / "manifest.json").read_text())["models"][0]["params"]
    assert str(small_build / "dense_b0" / "model.onnx") in r.stdout
    assert f"{params:,} in the PyTorch model" in r.stdout and "BatchNorm folded" in r.stdout
    info = json.loads(runner.invoke(cli, ["info", str(small_build / "dense_b0" / "model.onnx"), "--json"]).stdout)
    assert info["params_pytorch"] == params and info["params"] < params and "BatchNorm" in info["params_note"]
    # Not in the artifacts folder: the download cache.
    cache = tmp_path / "cache"
    hub.pull(["dense_b0"], str(small_build), cache_dir=cache)
    monkeypatch.setenv(hub.CACHE_ENV, str(cache))
    r = runner.invoke(cli, ["info", "dense_b0", "--artifacts", str(tmp_path / "none"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["path"].startswith(str(cache)) and json.loads(r.stdout)["params_pytorch"] == params
    r = runner.invoke(cli, ["info", "dense_b9", "--artifacts", str(small_build)])
    assert r.exit_code == 2 and "neither a file nor a model" in one_line_error(r, "info")


# -- Ctrl-C -----------------------------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_exit_130_and_leaves_nothing(tmp_path):
    out = tmp_path / "artifacts"
    p = subprocess.Popen(zoo_cmd("build", "dense_b0", "--input-dim", "64", "--no-verify", "--no-bench",
                                 "--artifacts", str(out)), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    seen = []
    for line in p.stderr:  # interrupt once the build is under way (the lock held, the export running)
        seen.append(line)
        if "create + export" in line:
            break
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(timeout=120) == 130, seen + [rest]
    assert rest.splitlines()[-1:] == ["Error: zoo build: interrupted"], rest
    assert "Traceback" not in rest and "\n\n" not in "".join(seen) + rest and "Aborted" not in rest
    assert not (out / "manifest.json").exists() and leftover_temporaries(out) == []
    assert not os.path.lexists(out / LOCK_NAME)
