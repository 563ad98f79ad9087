"""zoo.hub.publish: a static mirror of a build, checked before anything is written."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
from hub_server import MODEL, MODEL_PATH, TEST_IN, TEST_OUT, built, copy_tree, files_under, hub_env, snapshot  # noqa: F401

from zoo import hub
from zoo.builder import manifest as mf
from zoo.errors import ManifestError
from zoo.fsutil import sha256_file


def test_publish_writes_the_manifest_and_exactly_the_files_it_lists(built, tmp_path):
    src = copy_tree(built, tmp_path / "build")
    (src / MODEL / "notes.txt").write_text("not in the manifest")
    (src / MODEL / ".zoo-tmp-abc.part").write_bytes(b"leftover")
    (src / "other").mkdir()
    (src / "other" / "model.onnx").write_bytes(b"unlisted")
    dest = tmp_path / "mirror"
    rows = hub.publish(src, dest)

    entry = mf.entry(mf.load(src), MODEL)
    blobs = [f"blobs/sha256/{f['sha256'][:2]}/{f['sha256']}" for f in entry["files"]]
    vm = (dest / "releases" / MODEL / "1" / "manifest.json").read_bytes()
    assert files_under(dest) == sorted(["manifest.json", MODEL_PATH, TEST_IN, TEST_OUT, *blobs,
                                        f"releases/{MODEL}/1/manifest.json",
                                        f"releases/{MODEL}/1/{hashlib.sha256(vm).hexdigest()}.manifest.json",
                                        # the TUF metadata: unsigned (no keys given), but the same layout
                                        "metadata/1.root.json", "metadata/root.json", "metadata/1.targets.json",
                                        "metadata/1.snapshot.json", "metadata/timestamp.json"])
    published = mf.load(dest)
    assert published["models"][0].pop("release")["version"] == 1  # the entry gains its release record
    assert published == mf.load(src)
    assert mf.load(dest / "releases" / MODEL / "1") == mf.load(dest)
    for f in mf.entry(mf.load(src), MODEL)["files"]:
        assert sha256_file(dest / f["path"]) == f["sha256"]
        assert stat.S_IMODE((dest / f["path"]).stat().st_mode) == 0o644  # readable by a web server
    assert stat.S_IMODE((dest / "manifest.json").stat().st_mode) == 0o644
    assert {r["status"] for r in rows} == {"published"} and len(rows) == 4


def test_publishing_again_is_idempotent(built, tmp_path):
    dest = tmp_path / "mirror"
    hub.publish(built, dest)
    before = snapshot(dest)
    rows = hub.publish(built, dest)
    assert {r["status"] for r in rows} == {"unchanged"}
    assert snapshot(dest) == before  # not even a modification time changed


def test_a_changed_file_in_the_mirror_is_republished(built, tmp_path):
    dest = tmp_path / "mirror"
    hub.publish(built, dest)
    (dest / MODEL_PATH).write_bytes(b"damaged")
    rows = hub.publish(built, dest)
    assert [r["path"] for r in rows if r["status"] == "published"] == [MODEL_PATH]
    assert sha256_file(dest / MODEL_PATH) == sha256_file(built / MODEL_PATH)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\0"), "does not match its sha256"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "bytes,"),
    (lambda p: p.unlink(), "missing"),
])
def test_a_file_that_does_not_match_the_manifest_publishes_nothing(built, tmp_path, damage, message):
    src = copy_tree(built, tmp_path / "build")
    damage(src / TEST_OUT)
    dest = tmp_path / "mirror"
    with pytest.raises(hub.IntegrityError, match=message):
        hub.publish(src, dest)
    assert not dest.exists()


def test_a_damaged_build_leaves_an_existing_mirror_as_it_was(built, tmp_path):
    dest = tmp_path / "mirror"
    hub.publish(built, dest)
    before = snapshot(dest)
    src = copy_tree(built, tmp_path / "build")
    (src / MODEL_PATH).write_bytes(b"x" * 10)
    with pytest.raises(hub.IntegrityError):
        hub.publish(src, dest)
    assert snapshot(dest) == before


def test_publishing_named_models_into_an_existing_mirror_keeps_the_others(built, tmp_path):
    src = copy_tree(built, tmp_path / "build")
    shutil.copytree(src / MODEL, src / "dense_b1")
    m = json.loads((src / "manifest.json").read_text())
    twin = json.loads(json.dumps(m["models"][0]).replace(f"{MODEL}/", "dense_b1/"))
    twin["model"] = "dense_b1"
    m["models"].append(twin)
    (src / "manifest.json").write_text(json.dumps(m))

    dest = tmp_path / "mirror"
    hub.publish(src, dest, ["dense_b1"])
    assert [e["model"] for e in mf.load(dest)["models"]] == ["dense_b1"]
    assert not (dest / MODEL).exists()
    hub.publish(src, dest, [MODEL])
    assert [e["model"] for e in mf.load(dest)["models"]] == ["dense_b1", MODEL]
    with pytest.raises(hub.UnknownModelError, match="it offers: dense_b0, dense_b1"):
        hub.publish(src, dest, ["dense_b9"])


def test_unsafe_paths_in_the_build_manifest_are_refused(built, tmp_path):
    src = copy_tree(built, tmp_path / "build")
    m = json.loads((src / "manifest.json").read_text())
    m["models"][0]["files"][1]["path"] = "../../etc/passwd"
    (src / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(hub.UnsafePathError):
        hub.publish(src, tmp_path / "mirror")
    assert not (tmp_path / "mirror").exists()


def test_an_existing_mirror_of_an_unknown_schema_version_is_not_overwritten(built, tmp_path):
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / "manifest.json").write_text(json.dumps({"schema_version": 7, "models": []}))
    with pytest.raises(ManifestError, match="unknown schema_version 7"):
        hub.publish(built, dest)
    assert files_under(dest) == ["manifest.json"]


def test_bad_destinations_and_sources_are_bad_input(built, tmp_path):
    with pytest.raises(ValueError, match="artifacts folder itself"):
        hub.publish(built, built)
    with pytest.raises(ValueError, match="does not exist"):
        hub.publish(tmp_path / "nowhere", tmp_path / "mirror")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        hub.publish(built, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest"):
        hub.publish(tmp_path / "empty", tmp_path / "mirror")


def test_a_published_mirror_is_a_source(built, tmp_path):
    dest = tmp_path / "mirror"
    hub.publish(built, dest)
    path = hub.load(MODEL, Path(dest).as_uri(), cache_dir=tmp_path / "cache")
    assert sha256_file(path) == sha256_file(built / MODEL_PATH)
