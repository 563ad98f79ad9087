"""Issue 12: malformed manifests and models are typed one-line errors in bounded time; a failed pull
(a full disk included) leaves the cache as it was; a read-only cache serves verified files."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from hub_server import (  # noqa: F401
    MODEL,
    MODEL_PATH,
    TEST_OUT,
    built,
    copy_tree,
    hub_env,
    mirror,
    server,
    snapshot,
)

from zoo import hub
from zoo.errors import ManifestError, ZooError
from zoo.fsutil import TMP_PREFIX
from zoo.hub import paths
from zoo.hub.inspect import describe


def good(mirror: Path) -> dict:
    return json.loads((mirror / "manifest.json").read_text())


def _set(path: list, value):
    def mutate(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return m
    return mutate


WRONG_TYPES = [
    (["models"], {"a": 1}), (["models", 0], [1, 2]), (["models", 0, "model"], ["dense_b0"]),
    (["models", 0, "files"], {"path": "x"}), (["models", 0, "files", 0, "bytes"], "12"),
    (["models", 0, "files", 0], None), (["models", 0, "test_data", "sets"], "a"),
    (["models", 0, "files", 0, "bytes"], 10 ** 400), (["models", 0, "metadata"], []),
]


@pytest.mark.parametrize("path, value", WRONG_TYPES, ids=[str(i) for i in range(len(WRONG_TYPES))])
def test_wrong_json_types_are_one_line_manifest_errors(server, tmp_path, path, value):
    raw = json.dumps(_set(path, value)(good(server.root))).encode()
    server.overrides["manifest.json"] = raw
    with pytest.raises((ManifestError, hub.UnsafePathError)) as e:
        hub.pull([MODEL], server.url, cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value) and len(str(e.value)) < 500


@pytest.mark.parametrize("raw, message", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
    (b'{"schema_version": 1, "models": [' + b",".join([b"{}"] * 1_300_000) + b"]}", "more than 200,000 values"),
    (b'{"schema_version": 1, "generator": "' + b"n" * 31_000_000 + b'", "models": []}', "a string of 31,000,000"),
    (b'{"schema_version": 1, "models": [], "x": ' + b"9" * 400 + b"}", "integer out of range"),
    (b'{"schema_version": 1, "models": [], "x": NaN}', "NaN is not allowed"),
])
@pytest.mark.timeout(60, func_only=True)
def test_hostile_manifests_are_refused_in_bounded_time_online_and_offline(server, tmp_path, monkeypatch, raw, message):
    import time

    server.overrides["manifest.json"] = raw
    t0 = time.monotonic()
    with pytest.raises(ManifestError, match=message) as e:
        hub.list_models(server.url)
    assert len(str(e.value)) < 400
    assert time.monotonic() - t0 < 10, f"refusing it took {time.monotonic() - t0:.1f} s"
    # offline: the same bytes planted as the cached record of this source
    cache = tmp_path / "cache"
    (cache / "sources").mkdir(parents=True)
    (cache / "sources" / f"{hub.resolve_source(server.url).key}.json").write_bytes(raw)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(ManifestError, match=message):
        hub.list_models(server.url, cache_dir=cache)
    assert time.monotonic() - t0 < 10


def test_a_31_mb_model_name_is_cut_in_the_error_line(server):
    m = good(server.root)
    m["models"][0]["model"] = "n" * 31_000
    server.overrides["manifest.json"] = json.dumps(m).encode()
    with pytest.raises((ManifestError, hub.UnsafePathError)) as e:
        hub.list_models(server.url)
    assert len(str(e.value)) < 400 and "chars" in str(e.value)


def test_an_empty_model_whose_size_and_sha256_match_is_refused(server, tmp_path):
    m = good(server.root)
    r = next(f for f in m["models"][0]["files"] if f["path"] == MODEL_PATH)
    r.update(bytes=0, sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    server.overrides.update({"manifest.json": json.dumps(m).encode(), MODEL_PATH: b""})
    with pytest.raises(hub.IntegrityError, match="empty"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------------------
# zoo info and zoo verify on hostile models


def _model(tmp_path: Path, mutate=None, name="m.onnx") -> Path:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)])
    m.ir_version = 9
    if mutate:
        mutate(m)
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return p


def _sequence_input(m):
    m.graph.input[0].type.CopyFrom(onnx.helper.make_sequence_type_proto(
        onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [2])))


def _unknown_type(m):
    m.graph.input[0].type.tensor_type.elem_type = 99


def _odd_metadata(m):
    for k, v in [("k", "\x00" * 3), ("long", "v" * 100_000), ("\u00e9\u4e2d", "\ud7ff")]:
        m.metadata_props.add(key=k, value=v)


def _outside(m):
    t = onnx.numpy_helper.from_array(__import__("numpy").zeros(2, "float32"), "w")
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../etc/passwd")
    m.graph.initializer.append(t)


@pytest.mark.parametrize("mutate, error", [
    (_sequence_input, ZooError), (_unknown_type, ZooError), (_outside, hub.UnsafePathError),
])
def test_zoo_info_refuses_hostile_models_with_a_typed_error(tmp_path, mutate, error):
    with pytest.raises(error) as e:
        describe(_model(tmp_path, mutate))
    assert "\n" not in str(e.value)


def _duplicate_metadata(m):
    for v in ("a", "b"):
        m.metadata_props.add(key="k", value=v)


def test_zoo_info_cuts_odd_metadata_and_refuses_duplicate_keys(tmp_path):
    info = describe(_model(tmp_path, _odd_metadata))
    assert max(len(v) for v in info["metadata"].values()) <= 1000 and info["external_data"] == []
    with pytest.raises(ZooError, match="duplicate keys"):
        describe(_model(tmp_path, _duplicate_metadata, "dup.onnx"))
    with pytest.raises(ZooError, match="not a regular file"):
        describe(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "empty", "garbage"])
def test_zoo_info_refuses_special_empty_and_corrupt_files_without_blocking(tmp_path, kind):
    p = tmp_path / "model.onnx"
    {"fifo": lambda: os.mkfifo(p), "empty": lambda: p.write_bytes(b""), "garbage": lambda: p.write_bytes(b"\xff" * 64)}[kind]()
    r = subprocess.run([sys.executable, "-m", "zoo", "info", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_zoo_verify_on_a_corrupt_model_whose_sha256_matches_is_one_line(built, tmp_path):
    art = copy_tree(built, tmp_path / "art")
    (art / MODEL_PATH).write_bytes(b"\xff\x00garbage" * 10)
    m = json.loads((art / "manifest.json").read_text())
    r = next(f for f in m["models"][0]["files"] if f["path"] == MODEL_PATH)
    import hashlib

    r.update(bytes=90, sha256=hashlib.sha256((art / MODEL_PATH).read_bytes()).hexdigest())
    (art / "manifest.json").write_text(json.dumps(m))
    res = subprocess.run([sys.executable, "-m", "zoo", "verify", MODEL, "--artifacts", str(art), "--runtimes",
                          "reference", "--providers", "CPUExecutionProvider"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "not a readable ONNX model" in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------------------------------------------
# A failed pull leaves the cache as it was; a full disk; a read-only cache


def _new_version(server) -> None:
    """Serve a second version of the test output (so the next pull rewrites the view)."""
    m = good(server.root)
    new = b"\0" * 136
    r = next(f for f in m["models"][0]["files"] if f["path"] == TEST_OUT)
    import hashlib

    r.update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest())
    server.overrides.update({"manifest.json": json.dumps(m).encode(), TEST_OUT: new})


def test_enospc_while_the_view_is_copied_keeps_the_old_view(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    before = snapshot(cache)
    _new_version(server)
    real = paths.write_all

    def full(f, data):
        if ".zoo-tmp-view-" in os.readlink(f"/proc/self/fd/{f.fileno()}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, data)
    monkeypatch.setattr(paths, "write_all", full)
    with pytest.raises(hub.HubError, match="No space left on device"):
        hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    assert snapshot(cache) == before  # the old view, its manifest, no new blob, no temporary file
    assert all(r["status"] == "ok" for r in hub.cache_verify(cache))


@contextlib.contextmanager
def _mount(folder: Path, *options: str):
    """A real mount (tmpfs, or a read-only bind) where this process may mount; else None."""
    cmd = ["mount", *options, str(folder)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_leaves_the_cache_as_it_was(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    with _mount(cache, "-t", "tmpfs", "-o", "size=48m", "tmpfs") as real:
        hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
        if real:  # fill the disk to the last block
            for block in (1 << 20, 4096):
                with open(cache / f"filler-{block}", "wb", buffering=0) as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * block)
        else:  # no mount here: the same failure, simulated at the write
            monkeypatch.setattr(paths, "write_all", lambda f, d: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
        before = snapshot(cache)
        _new_version(server)
        with pytest.raises(hub.HubError, match="No space left on device"):
            hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
        assert snapshot(cache) == before
        assert not list(cache.rglob(TMP_PREFIX + "*"))


def test_a_read_only_cache_serves_verified_files_online_and_offline(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    with _mount(cache, "--bind", str(cache)) as bound:
        if bound:
            assert subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)]).returncode == 0
        else:
            for p in [cache, *cache.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
        with pytest.raises(OSError):
            (cache / "probe").write_text("x")  # really read-only
        assert hub.load(MODEL, server.url, cache_dir=cache).is_file()
        monkeypatch.setenv("ZOO_OFFLINE", "1")
        assert hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)[0].status == "cached"
        assert all(r["status"] == "ok" for r in hub.cache_verify(cache))
        assert hub.cache_list(cache)["models"][0]["name"] == MODEL


def test_zoo_hub_imports_no_torch():
    code = "import sys, zoo.hub, zoo.hub.inspect; assert 'torch' not in sys.modules, 'torch'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
