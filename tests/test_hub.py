"""zoo.hub, the Python API: pulling from a real HTTP server on 127.0.0.1, file:// URLs and folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hub_server import (  # noqa: F401 - fixtures
    MODEL,
    MODEL_PATH,
    TEST_IN,
    TEST_OUT,
    built,
    copy_tree,
    files_under,
    hub_env,
    mirror,
    server,
    serving,
    snapshot,
)

from zoo import hub
from zoo.builder import manifest as mf
from zoo.builder.artifact import read_tensor
from zoo.errors import ManifestError, ProviderUnavailableError
from zoo.fsutil import TMP_PREFIX, sha256_file


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def record(root: Path, path: str) -> dict:
    return next(f for f in manifest_of(root)["models"][0]["files"] if f["path"] == path)


def serve_manifest(server, mutate) -> dict:
    m = manifest_of(server.root)
    mutate(m)
    server.overrides["manifest.json"] = json.dumps(m).encode()
    return m


def blob(cache: Path, sha: str) -> Path:
    return cache / "blobs" / "sha256" / sha[:2] / sha


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(TMP_PREFIX + "*")) if folder.exists() else []


# --------------------------------------------------------------------------------------------------
# Sources and the layout of the cache


def test_list_models_is_the_same_over_http_file_url_and_folder(server, mirror):
    over_http = hub.list_models(server.url)
    assert [m["name"] for m in over_http] == [MODEL]
    assert over_http[0]["precisions"] == ["fp32"]
    assert over_http[0]["model_sha"] == record(mirror, MODEL_PATH)["sha256"]
    assert over_http[0]["input_dim"] == 64
    assert hub.list_models(mirror.as_uri()) == over_http
    assert hub.list_models(str(mirror)) == over_http
    assert hub.list_models(str(mirror / "manifest.json")) == over_http
    assert server.log == ["manifest.json"]


def test_load_over_http_stores_blobs_by_hash_and_a_view_of_real_files(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    rec = record(mirror, MODEL_PATH)
    path = hub.load(MODEL, server.url, cache_dir=cache)

    view = cache / "models" / MODEL
    assert path == view / MODEL_PATH
    assert sha256_file(path) == rec["sha256"]
    b = blob(cache, rec["sha256"])
    assert sha256_file(b) == rec["sha256"]
    # Real files: no symlink, no second hard link, not the blob's inode.
    for p in (path, b):
        assert not p.is_symlink() and p.stat().st_nlink == 1
    assert path.stat().st_ino != b.stat().st_ino
    # The view is an artifacts folder of its own: a valid manifest listing exactly what it holds.
    view_manifest = mf.load(view)
    assert [m["model"] for m in view_manifest["models"]] == [MODEL]
    assert [f["path"] for f in mf.entry(view_manifest, MODEL)["files"]] == [MODEL_PATH]
    assert files_under(view) == ["dense_b0/model.onnx", "manifest.json"]
    assert server.count(MODEL_PATH) == 1 and server.count(TEST_IN) == 0
    assert leftovers(cache) == []


def test_with_test_data_the_view_holds_the_test_set(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    results = hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    view = results[0].view
    assert files_under(view) == sorted([MODEL_PATH, TEST_IN, TEST_OUT, "manifest.json"])
    entry = mf.entry(mf.load(view), MODEL)
    assert {f["path"] for f in entry["files"]} == {MODEL_PATH, TEST_IN, TEST_OUT}
    for p in (TEST_IN, TEST_OUT):
        assert sha256_file(view / p) == record(mirror, p)["sha256"]
    assert results[0].status == "downloaded"
    assert {f["status"] for f in results[0].files} == {"downloaded"}
    # A later pull without test data keeps them (same version) and downloads nothing.
    again = hub.pull([MODEL], server.url, cache_dir=cache)
    assert again[0].status == "cached"
    assert (view / TEST_OUT).is_file() and len(mf.entry(mf.load(view), MODEL)["files"]) == 3
    assert server.count(MODEL_PATH) == 1


@pytest.mark.parametrize("kind", ["file-url", "folder"])
def test_load_from_local_sources(mirror, tmp_path, kind):
    source = mirror.as_uri() if kind == "file-url" else str(mirror)
    path = hub.load(MODEL, source, cache_dir=tmp_path / "cache")
    assert sha256_file(path) == record(mirror, MODEL_PATH)["sha256"]
    assert path.is_relative_to(tmp_path / "cache")


def test_default_source_is_zoo_source_else_the_local_build_output(server, built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.resolve_source().root == (tmp_path / "artifacts").resolve()
    with pytest.raises(hub.SourceError, match="artifacts does not exist"):
        hub.load(MODEL, cache_dir=tmp_path / "cache")
    shutil.copytree(built, tmp_path / "artifacts")
    assert hub.load(MODEL, cache_dir=tmp_path / "cache").is_file()  # a fresh checkout pulls what it built
    assert server.count() == 0
    monkeypatch.setenv("ZOO_SOURCE", server.url)
    assert hub.resolve_source().url == server.url
    hub.load(MODEL, cache_dir=tmp_path / "cache2")
    assert server.count(MODEL_PATH) == 1
    assert hub.resolve_source(str(built)).root == built.resolve()  # an argument beats the variable


def test_sources_other_than_http_file_and_folders_are_bad_input():
    for bad in ("ftp://example.invalid/zoo", "s3://bucket/zoo", "file://otherhost/zoo", "http://"):
        with pytest.raises(ValueError):
            hub.resolve_source(bad)
    assert hub.resolve_source("http://127.0.0.1:9/zoo").url == "http://127.0.0.1:9/zoo/"
    assert hub.resolve_source("https://127.0.0.1:9/zoo/manifest.json").url == "https://127.0.0.1:9/zoo/"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    home = Path(os.environ["HOME"])
    assert hub.resolve_cache_dir() == home / ".cache" / "zoo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.resolve_cache_dir() == tmp_path / "xdg" / "zoo"
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "env"))
    assert hub.resolve_cache_dir() == tmp_path / "env"
    assert hub.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_default_cache_is_used_when_none_is_given(server, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = hub.load(MODEL, server.url)
    assert path.is_relative_to(tmp_path / "xdg" / "zoo" / "models")


# --------------------------------------------------------------------------------------------------
# Verification of cached files


def test_cached_files_are_reverified_and_a_corrupt_view_is_restored_from_its_blob(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    path = hub.load(MODEL, server.url, cache_dir=cache)
    good = path.read_bytes()
    data = bytearray(good)
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, different content
    again = hub.load(MODEL, server.url, cache_dir=cache)
    assert again == path and again.read_bytes() == good
    assert server.count(MODEL_PATH) == 1  # restored from the blob, not downloaded


def test_a_corrupt_blob_and_view_are_downloaded_again(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    sha = record(mirror, MODEL_PATH)["sha256"]
    path = hub.load(MODEL, server.url, cache_dir=cache)
    for p in (path, blob(cache, sha)):
        p.write_bytes(b"not a model")
    assert sha256_file(hub.load(MODEL, server.url, cache_dir=cache)) == sha
    assert sha256_file(blob(cache, sha)) == sha
    assert server.count(MODEL_PATH) == 2


def test_a_hard_linked_or_symlinked_view_file_is_replaced_by_a_real_copy(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    path = hub.load(MODEL, server.url, cache_dir=cache)
    b = blob(cache, record(mirror, MODEL_PATH)["sha256"])
    path.unlink()
    os.link(b, path)
    hub.load(MODEL, server.url, cache_dir=cache)
    assert path.stat().st_nlink == 1 and b.stat().st_nlink == 1
    path.unlink()
    path.symlink_to(b)
    hub.load(MODEL, server.url, cache_dir=cache)
    assert not path.is_symlink() and sha256_file(path) == sha256_file(b)


# --------------------------------------------------------------------------------------------------
# Integrity of downloads


@pytest.mark.parametrize("behaviour, message", [
    ("tamper", "sha256"),
    ("extra", "larger than the manifest says"),
    ("extra_nolength", "larger than the manifest says"),
])
def test_a_bad_download_is_rejected_and_nothing_is_left_in_the_cache(server, tmp_path, behaviour, message):
    cache = tmp_path / "cache"
    server.set(MODEL_PATH, behaviour, then=behaviour)
    with pytest.raises(hub.IntegrityError, match=message):
        hub.load(MODEL, server.url, cache_dir=cache)
    assert files_under(cache) == []
    assert server.count(MODEL_PATH) == 1  # integrity failures are not retried


def test_a_tampered_download_leaves_an_existing_cache_unchanged(server, tmp_path):
    cache = tmp_path / "cache"
    hub.load(MODEL, server.url, cache_dir=cache)
    before = snapshot(cache)
    server.set(TEST_OUT, "tamper")
    with pytest.raises(hub.IntegrityError):
        hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    assert snapshot(cache) == before


def test_a_failure_in_a_later_file_takes_back_the_earlier_ones(server, tmp_path):
    cache = tmp_path / "cache"
    server.set(TEST_OUT, "tamper")
    with pytest.raises(hub.IntegrityError, match="output_0.pb"):
        hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    assert server.count(MODEL_PATH) == 1 and server.count(TEST_IN) == 1  # they were downloaded ...
    assert files_under(cache) == []  # ... and taken back
    assert snapshot(cache) == {}  # not even an empty folder is left


def test_a_body_cut_short_is_retried_a_bounded_number_of_times_and_never_cached(server, tmp_path):
    cache = tmp_path / "cache"
    server.set(MODEL_PATH, then="truncate")
    with pytest.raises(hub.SourceError, match=r"ended after .* of .* bytes.*gave up after 4 attempts"):
        hub.load(MODEL, server.url, cache_dir=cache)
    assert server.count(MODEL_PATH) == hub.RETRIES + 1
    assert files_under(cache) == []


def test_dropped_connections_and_server_errors_are_survived(server, mirror, tmp_path):
    server.set("manifest.json", "drop")
    server.set(MODEL_PATH, "truncate", "drop", "status:503")
    path = hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert sha256_file(path) == record(mirror, MODEL_PATH)["sha256"]
    assert server.count(MODEL_PATH) == 4 and server.count("manifest.json") == 2
    assert leftovers(tmp_path / "cache") == []


def test_a_body_without_content_length_is_accepted_when_it_verifies(server, mirror, tmp_path):
    server.set(MODEL_PATH, "nolength")
    path = hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert sha256_file(path) == record(mirror, MODEL_PATH)["sha256"]


def test_retries_back_off_exponentially_up_to_a_ceiling(server, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(hub, "_sleep", waits.append)
    monkeypatch.setattr(hub, "BACKOFF_S", 1.0)
    monkeypatch.setattr(hub, "BACKOFF_MAX_S", 3.0)
    monkeypatch.setattr(hub, "RETRIES", 4)
    server.set("manifest.json", then="status:503")
    with pytest.raises(hub.SourceError, match="HTTP 503.*gave up after 5 attempts"):
        hub.list_models(server.url)
    assert waits == [1.0, 2.0, 3.0, 3.0]
    assert server.count("manifest.json") == 5


def test_a_missing_file_is_reported_without_retries(server, tmp_path):
    server.set(MODEL_PATH, then="status:404")
    with pytest.raises(hub.SourceError, match="HTTP 404"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert server.count(MODEL_PATH) == 1
    assert files_under(tmp_path / "cache") == []


def test_a_slow_server_is_waited_for_within_the_timeout_and_reported_beyond_it(server, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "TIMEOUT_S", 1.0)
    server.set(MODEL_PATH, "slow:0.3")
    assert hub.load(MODEL, server.url, cache_dir=tmp_path / "a").is_file()
    monkeypatch.setattr(hub, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(hub, "RETRIES", 1)
    server.set(MODEL_PATH, then="slow:3")
    with pytest.raises(hub.SourceError, match="timed out.*gave up after 2 attempts"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "b")
    assert files_under(tmp_path / "b") == []


def test_leftovers_of_a_killed_pull_never_break_the_next_one(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    sha = record(mirror, MODEL_PATH)["sha256"]
    stale = [blob(cache, sha).parent / f"{TMP_PREFIX}dead.part", cache / "models" / MODEL / MODEL / f"{TMP_PREFIX}x.part"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a model")
    path = hub.load(MODEL, server.url, cache_dir=cache)
    assert sha256_file(path) == sha
    assert leftovers(cache) == []


# --------------------------------------------------------------------------------------------------
# Offline


def test_offline_loads_verified_cached_files_without_any_network_call(server, mirror, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = hub.load(MODEL, server.url, cache_dir=cache)
    calls = server.count()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert hub.load(MODEL, server.url, cache_dir=cache) == path
    assert [m["name"] for m in hub.list_models(server.url, cache_dir=cache)] == [MODEL]
    path.write_bytes(b"corrupt")  # still repaired, from the blob
    assert sha256_file(hub.load(MODEL, server.url, cache_dir=cache)) == record(mirror, MODEL_PATH)["sha256"]
    assert server.count() == calls


def test_offline_without_the_file_raises_without_any_network_call(server, mirror, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="ZOO_OFFLINE=1"):
        hub.load(MODEL, server.url, cache_dir=cache)
    monkeypatch.delenv("ZOO_OFFLINE")
    hub.load(MODEL, server.url, cache_dir=cache)
    calls = server.count()
    before = snapshot(cache)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="input_0.pb is not in the cache"):
        hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    blob(cache, record(mirror, MODEL_PATH)["sha256"]).write_bytes(b"x")
    (cache / "models" / MODEL / MODEL_PATH).write_bytes(b"x")
    with pytest.raises(hub.OfflineError, match="fails verification"):
        hub.load(MODEL, server.url, cache_dir=cache)
    assert server.count() == calls
    assert set(snapshot(cache)) == set(before)


# --------------------------------------------------------------------------------------------------
# Manifests from strangers


UNSAFE_PATHS = [
    "/etc/passwd",
    "../model.onnx",
    "dense_b0/../../model.onnx",
    "C:/zoo/model.onnx",
    "c:model.onnx",
    "\\\\server\\share\\model.onnx",
    "//server/share/model.onnx",
    "dense_b0\\..\\..\\model.onnx",
    "dense_b0/./model.onnx",
]


@pytest.mark.parametrize("bad", UNSAFE_PATHS)
def test_unsafe_paths_in_a_manifest_are_refused_before_anything_is_written(server, tmp_path, bad):
    def mutate(m):
        m["models"][0]["files"][0]["path"] = bad
    serve_manifest(server, mutate)
    with pytest.raises(hub.UnsafePathError, match="unsafe path"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    assert server.count(MODEL_PATH) == 0


@pytest.mark.parametrize("bad", ["..", ".", "/abs", "a/b", "C:x"])
def test_unsafe_model_names_are_refused(server, tmp_path, bad):
    serve_manifest(server, lambda m: m["models"][0].update(model=bad))
    with pytest.raises(hub.UnsafePathError):
        hub.list_models(server.url)
    assert not (tmp_path / "cache").exists()


def test_a_view_that_resolves_outside_the_cache_is_refused(server, tmp_path):
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    (cache / "models").mkdir(parents=True)
    (cache / "models" / MODEL).symlink_to(outside)
    with pytest.raises(hub.UnsafePathError, match="outside"):
        hub.load(MODEL, server.url, cache_dir=cache)
    assert list(outside.iterdir()) == []
    assert files_under(cache) == [f"models/{MODEL}"]  # the link, nothing more


def test_a_local_source_file_that_links_outside_the_source_is_refused(mirror, tmp_path):
    src = copy_tree(mirror, tmp_path / "src")
    secret = tmp_path / "secret.onnx"
    shutil.copy(src / MODEL_PATH, secret)
    (src / MODEL_PATH).unlink()
    (src / MODEL_PATH).symlink_to(secret)
    with pytest.raises(hub.UnsafePathError, match="outside"):
        hub.load(MODEL, str(src), cache_dir=tmp_path / "cache")


def test_unknown_schema_version_is_refused(server, tmp_path):
    serve_manifest(server, lambda m: m.update(schema_version=99))
    with pytest.raises(ManifestError, match="unknown schema_version 99"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"schema_version": 1, "models": []}', b"\xff\xfe"])
def test_malformed_manifests_are_refused(server, tmp_path, raw):
    server.overrides["manifest.json"] = raw
    with pytest.raises(ManifestError):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_oversize_manifest_is_refused(server, monkeypatch):
    monkeypatch.setattr(hub, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(ManifestError, match="larger than"):
        hub.list_models(server.url)


def test_a_file_the_manifest_says_is_smaller_is_refused(server, tmp_path):
    serve_manifest(server, lambda m: m["models"][0]["files"][0].update(bytes=1000))
    with pytest.raises(hub.IntegrityError, match="the manifest says 1,000"):
        hub.load(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert files_under(tmp_path / "cache") == []


def test_an_unknown_model_lists_what_the_source_offers(server, tmp_path):
    with pytest.raises(hub.UnknownModelError, match=r"'dense_b9' is not offered by .*; it offers: dense_b0"):
        hub.load("dense_b9", server.url, cache_dir=tmp_path / "cache")
    with pytest.raises(hub.UnknownModelError, match="no int8 model .* it has: fp32"):
        hub.load(MODEL, server.url, precision="int8", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="unknown precision"):
        hub.load(MODEL, server.url, precision="fp64", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_unreachable_source_with_a_cached_manifest_points_to_offline_mode(mirror, tmp_path):
    cache = tmp_path / "cache"
    with serving(mirror) as srv:
        url = srv.url
        hub.load(MODEL, url, cache_dir=cache)
    before = snapshot(cache)
    with pytest.raises(hub.SourceError, match="connection refused.*set ZOO_OFFLINE=1 to use what is cached"):
        hub.load(MODEL, url, cache_dir=cache)
    assert snapshot(cache) == before


def test_an_unreachable_source_is_reported(tmp_path):
    with serving(tmp_path) as srv:
        url = srv.url
    with pytest.raises(hub.SourceError, match="connection refused.*gave up"):
        hub.load(MODEL, url, cache_dir=tmp_path / "cache")
    with pytest.raises(hub.SourceError, match="does not exist"):
        hub.load(MODEL, str(tmp_path / "nowhere"), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------------------
# External data


def _tiny_model_with_external_data(folder: Path, location: str = "weights.bin") -> None:
    w = onnx.numpy_helper.from_array(np.arange(4096, dtype=np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])], "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4096])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4096])], [w])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    if location != "weights.bin":
        proto = onnx.load_model(str(folder / "model.onnx"), load_external_data=False)
        for kv in proto.graph.initializer[0].external_data:
            if kv.key == "location":
                kv.value = location
        (folder / "model.onnx").write_bytes(proto.SerializeToString())


def _mirror_with_tiny(mirror: Path, root: Path, location: str = "weights.bin", list_weights: bool = True) -> Path:
    root = copy_tree(mirror, root)
    _tiny_model_with_external_data(root / "tiny", location)
    m = manifest_of(root)
    entry = json.loads(json.dumps(m["models"][0]))
    files = [{"path": "tiny/model.onnx"}] + ([{"path": "tiny/weights.bin"}] if list_weights else [])
    for f in files:
        p = root / f["path"]
        f.update(bytes=p.stat().st_size, sha256=sha256_file(p), role="model", precision="fp32")
    entry.update(model="tiny", model_path="tiny/model.onnx", files=files)
    entry["metadata"].update(model_sha=files[0]["sha256"], model_bytes=files[0]["bytes"])
    m["models"].append(entry)
    (root / "manifest.json").write_text(json.dumps(m))
    return root


def test_external_data_inside_the_model_folder_is_pulled_and_loads_from_the_view(mirror, tmp_path):
    src = _mirror_with_tiny(mirror, tmp_path / "src")
    with serving(src) as srv:
        path = hub.load("tiny", srv.url, cache_dir=tmp_path / "cache")
        assert srv.count("tiny/weights.bin") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "weights.bin"]
    model = onnx.load_model(str(path))  # onnx follows the external data: real files, inside the folder
    assert onnx.numpy_helper.to_array(model.graph.initializer[0])[-1] == 4095
    sess = hub.session("tiny", str(src), cache_dir=tmp_path / "cache")
    assert sess.run(None, {"x": np.ones(4096, np.float32)})[0][1] == 2.0


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "../../outside/weights.bin"])
def test_external_data_pointing_outside_the_model_folder_is_refused(mirror, tmp_path, location):
    src = _mirror_with_tiny(mirror, tmp_path / "src", location=location)
    with serving(src) as srv:
        with pytest.raises(hub.UnsafePathError, match="inside the model's folder"):
            hub.load("tiny", srv.url, cache_dir=tmp_path / "cache")
        assert srv.count("tiny/weights.bin") == 0
    assert files_under(tmp_path / "cache") == []


def test_external_data_the_manifest_does_not_list_is_refused(mirror, tmp_path):
    src = _mirror_with_tiny(mirror, tmp_path / "src", list_weights=False)
    with pytest.raises(hub.IntegrityError, match="does not list"):
        hub.load("tiny", str(src), cache_dir=tmp_path / "cache")
    assert files_under(tmp_path / "cache") == []


# --------------------------------------------------------------------------------------------------
# Sessions, several models, versions, the cache API


def test_session_reproduces_the_published_test_data(server, mirror, tmp_path):
    sess = hub.session(MODEL, server.url, cache_dir=tmp_path / "cache")
    x = read_tensor((mirror / TEST_IN).read_bytes())
    y = read_tensor((mirror / TEST_OUT).read_bytes())
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], y, rtol=1e-3, atol=1e-3)


def test_an_unavailable_provider_is_reported_before_any_download(server, tmp_path):
    with pytest.raises(ProviderUnavailableError, match="NoSuchExecutionProvider is not available"):
        hub.session(MODEL, server.url, providers=["NoSuchExecutionProvider"], cache_dir=tmp_path / "cache")
    assert server.count() == 0 and not (tmp_path / "cache").exists()


def _two_models(mirror: Path, root: Path) -> Path:
    root = copy_tree(mirror, root)
    shutil.copytree(root / MODEL, root / "dense_b1")
    m = manifest_of(root)
    twin = json.loads(json.dumps(m["models"][0]).replace(f"{MODEL}/", "dense_b1/"))
    twin["model"] = "dense_b1"
    m["models"].append(twin)
    (root / "manifest.json").write_text(json.dumps(m))
    return root


def test_models_sharing_a_file_share_one_blob_and_get_a_view_each(mirror, tmp_path):
    src = _two_models(mirror, tmp_path / "src")
    cache = tmp_path / "cache"
    with serving(src) as srv:
        results = hub.pull(None, srv.url, cache_dir=cache)  # every model
        assert srv.count(MODEL_PATH) == 1 and srv.count("dense_b1/model.onnx") == 0
    assert [r.name for r in results] == [MODEL, "dense_b1"]
    assert [r.status for r in results] == ["downloaded", "cached"]
    assert len(list((cache / "blobs").rglob("*/*/*"))) == 1
    assert (cache / "models" / "dense_b1" / "dense_b1" / "model.onnx").is_file()
    assert [v["name"] for v in hub.cache_list(cache)["models"]] == ["dense_b0", "dense_b1"]


def test_a_new_version_replaces_the_view_and_keeps_the_old_blob(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    new = copy_tree(mirror, tmp_path / "v2")
    (new / TEST_OUT).write_bytes(b"\0" * 136)
    m = manifest_of(new)
    rec = next(f for f in m["models"][0]["files"] if f["path"] == TEST_OUT)
    rec["sha256"] = sha256_file(new / TEST_OUT)
    (new / "manifest.json").write_text(json.dumps(m))
    path = hub.load(MODEL, str(new), cache_dir=cache)  # without test data: the stale output leaves the view
    view = cache / "models" / MODEL
    assert files_under(view) == sorted([MODEL_PATH, TEST_IN, "manifest.json"])
    assert {f["path"] for f in mf.entry(mf.load(view), MODEL)["files"]} == {MODEL_PATH, TEST_IN}
    assert blob(cache, record(mirror, TEST_OUT)["sha256"]).is_file()  # the old version stays in the store
    assert path.is_file()
    hub.pull([MODEL], str(new), with_test_data=True, cache_dir=cache)
    assert (view / TEST_OUT).read_bytes() == b"\0" * 136


def test_cache_list_verify_and_clear(server, mirror, tmp_path):
    cache = tmp_path / "cache"
    assert hub.cache_list(cache)["models"] == [] and hub.cache_verify(cache) == []
    hub.pull([MODEL], server.url, with_test_data=True, cache_dir=cache)
    info = hub.cache_list(cache)
    assert info["blobs"] == 3 and info["models"][0]["precisions"] == ["fp32"] and info["models"][0]["test_data"]
    rows = hub.cache_verify(cache)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    (cache / "models" / MODEL / TEST_IN).write_bytes(b"changed")
    blob(cache, record(mirror, MODEL_PATH)["sha256"]).write_bytes(b"changed")
    bad = [r for r in hub.cache_verify(cache) if r["status"] != "ok"]
    assert sorted(r["kind"] for r in bad) == ["blob", "view"]
    with pytest.raises(hub.HubError, match="dense_b7: not in the cache"):
        hub.cache_clear(["dense_b7"], cache)
    keep = tmp_path / "cache" / "notes.txt"  # not the zoo's: never removed
    keep.write_text("mine")
    removed = hub.cache_clear([MODEL], cache)
    assert removed["files"] == 7  # 3 view files + the view manifest + 3 blobs nothing uses any more
    assert files_under(cache) == ["notes.txt", f"sources/{hub.resolve_source(server.url).key}.json"]
    hub.cache_clear(None, cache)
    assert files_under(cache) == ["notes.txt"]


def test_pull_takes_one_name_or_several(server, tmp_path):
    (one,) = hub.pull(MODEL, server.url, cache_dir=tmp_path / "cache")
    assert one.name == MODEL and one.path.is_file()
    assert [r.name for r in hub.pull([MODEL, MODEL], server.url, cache_dir=tmp_path / "cache")] == [MODEL]
