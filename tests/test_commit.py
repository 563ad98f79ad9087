"""Crash consistency of a build's commit: killed (SIGKILL) after any step, the folder is, once the
next lock holder has recovered it, exactly the previous artifacts or exactly the new ones."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from zoo.builder import manifest as mf
from zoo.builder.artifact import file_record
from zoo.builder.commit import JOURNAL_NAME, KILL_ENV
from zoo.builder.lock import LOCK_NAME, artifacts_lock
from zoo.builder.pipeline import remove_leftovers
from zoo.fsutil import sha256_file

from conftest import ROOT, zoo_cmd

# A child that commits NEW (files and a manifest prepared by the test) into ROOT as a build does.
COMMIT_CHILD = """
import json, sys
from pathlib import Path
from zoo.builder.commit import Staging
from zoo.builder.lock import artifacts_lock
spec = json.loads(Path(sys.argv[1]).read_text())
with artifacts_lock(spec["root"]):
    staging = Staging(Path(spec["root"]))
    for rel, src in spec["files"].items():
        staging.add(rel, Path(src).read_bytes())
    staging.commit(Path(spec["manifest"]).read_bytes(), spec["stale"])
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def matches_manifest(root: Path) -> bool:
    return all(sha256_file(root / f["path"]) == f["sha256"] for m in mf.load(root)["models"] for f in m["files"])


def _old_and_new(small_build: Path, tmp_path: Path):
    """The previous artifacts (dense_b0 with an int8 file) and a new version of them: every file
    rewritten, the int8 file no longer listed (stale), an fp16 file that did not exist."""
    old = tmp_path / "old"
    shutil.copytree(small_build, old)
    manifest = mf.load(old)
    entry = copy.deepcopy(manifest["models"][0])
    int8 = b"previous int8 model"
    (old / "dense_b0" / "model.int8.onnx").write_bytes(int8)
    entry["files"].append(file_record("dense_b0/model.int8.onnx", int8, "model", "int8"))
    mf.save(old / mf.MANIFEST_NAME, mf.upsert(manifest, entry))

    new_files = {f["path"]: (old / f["path"]).read_bytes()[::-1] for f in entry["files"] if "int8" not in f["path"]}
    new_files["dense_b0/model.fp16.onnx"] = b"new fp16 model"
    new_entry = copy.deepcopy(entry)
    new_entry["files"] = [file_record(p, b, r["role"], r["precision"]) for r in entry["files"]
                          for p, b in new_files.items() if r["path"] == p]
    new_entry["files"].append(file_record("dense_b0/model.fp16.onnx", new_files["dense_b0/model.fp16.onnx"],
                                          "model", "fp16"))
    new_manifest = mf.upsert(mf.load(old), new_entry)

    src = tmp_path / "new-src"
    spec_files = {}
    for i, (rel, data) in enumerate(new_files.items()):
        (src / str(i)).parent.mkdir(parents=True, exist_ok=True)
        (src / str(i)).write_bytes(data)
        spec_files[rel] = str(src / str(i))
    (src / "manifest").write_bytes(mf.to_bytes(new_manifest))
    expected_new = {k: v for k, v in snapshot(old).items() if "int8" not in k}
    expected_new.update(new_files)
    expected_new["manifest.json"] = mf.to_bytes(new_manifest)
    return old, snapshot(old), expected_new, {"files": spec_files, "manifest": str(src / "manifest"),
                                              "stale": ["dense_b0/model.int8.onnx"]}


def test_a_commit_killed_after_any_step_leaves_the_folder_all_old_or_all_new(small_build, tmp_path):
    old, before, after, spec = _old_and_new(small_build, tmp_path)
    work, spec_path = tmp_path / "work", tmp_path / "spec.json"
    outcomes, torn = [], 0
    for k in range(1, 60):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(old, work)
        spec_path.write_text(json.dumps(dict(spec, root=str(work))))
        r = subprocess.run([sys.executable, "-c", COMMIT_CHILD, str(spec_path)], env={**os.environ, KILL_ENV: str(k)},
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        if r.returncode == 0:  # k is past the last step: the commit ran to its end
            assert snapshot(work) == after
            break
        assert r.returncode == -signal.SIGKILL, r.stderr
        if (work / JOURNAL_NAME).exists() and not matches_manifest(work):
            torn += 1  # the window of issue 23: files renamed, manifest not yet (or the reverse)
        with artifacts_lock(work):  # the next build, verify or bench: recovers on taking the lock
            pass
        remove_leftovers(work)  # what the next build then does with temporaries nobody committed
        state = snapshot(work)
        assert state in (before, after), f"killed after step {k}: neither the old nor the new folder"
        assert matches_manifest(work)
        assert not (work / JOURNAL_NAME).exists() and not (work / LOCK_NAME).exists()
        outcomes.append("old" if state == before else "new")
    else:
        raise AssertionError("the commit never ran to its end")
    # Every step was a kill point: the early ones roll back, the late ones roll forward.
    assert len(outcomes) >= 10 and outcomes[0] == "old" and outcomes[-1] == "new", outcomes
    assert outcomes == sorted(outcomes, key=["old", "new"].index)
    assert torn >= 3, "the kills never fell between the renames"


def test_a_real_build_killed_between_the_model_and_the_manifest_is_rolled_back(small_build, tmp_path):
    """The reported case with the real command: killed after dense_b0/model.onnx is renamed into
    place, before the manifest. Also: a planted .zoo-lock link to a file outside is never written
    through, and ONNX Runtime leaves nothing in $HOME."""
    work, home, canary = tmp_path / "work", tmp_path / "home", tmp_path / "canary"
    shutil.copytree(small_build, work)
    home.mkdir()
    canary.write_text("outside")
    (work / LOCK_NAME).symlink_to(canary)
    before = snapshot(work)
    # Steps: 1 the manifest staged, 2 the journal, 3 model.onnx kept, 4 model.onnx renamed.
    r = subprocess.run(zoo_cmd("build", "dense_b0", "--input-dim", "64", "--seed", "1", "--no-verify", "--no-bench",
                               "--artifacts", str(work)), env={**os.environ, KILL_ENV: "4", "HOME": str(home)},
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert canary.read_text() == "outside" and not canary.is_symlink()
    assert (work / "manifest.json").read_bytes() == before["manifest.json"]
    assert (work / "dense_b0/model.onnx").read_bytes() != before["dense_b0/model.onnx"]  # torn until recovered
    with artifacts_lock(work):
        pass
    remove_leftovers(work)
    assert snapshot(work) == {k: v for k, v in before.items() if k != LOCK_NAME}
    assert matches_manifest(work)
    assert not os.path.lexists(work / LOCK_NAME)  # the planted link was replaced by the note, then removed
    assert canary.read_text() == "outside"
    assert not (home / ".cache" / "Microsoft").exists(), "ONNX Runtime wrote its telemetry folder"
