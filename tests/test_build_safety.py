"""Build safety: one writer per artifacts folder, stale files removed, --check refuses what it ignores."""

import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from zoo.builder import manifest as mf
from zoo.builder.lock import LOCK_NAME, artifacts_lock
from zoo.cli import cli
from zoo.fsutil import leftover_temporaries, sha256_file

from conftest import ROOT, zoo_cmd

runner = CliRunner()


def test_a_rebuild_removes_the_files_its_entry_no_longer_lists_and_nothing_else(tmp_path):
    out = tmp_path / "zoo"
    args = ["build", "dense_b0", "--input-dim", "32", "--no-verify", "--no-bench", "--artifacts", str(out)]
    r = runner.invoke(cli, [*args, "--precision", "fp32,int8"])
    assert r.exit_code == 0, r.output
    assert (out / "dense_b0" / "model.int8.onnx").is_file()
    assert not os.path.lexists(out / LOCK_NAME)  # nothing of the lock is left to be published (issue 25)
    mine = out / "dense_b0" / "notes.txt"  # not the zoo's: never touched
    mine.write_text("keep me")
    canary = tmp_path / "canary"  # outside: a link planted as the lock's note is never written through
    canary.write_text("outside")
    (out / LOCK_NAME).symlink_to(canary)
    r = runner.invoke(cli, args)  # fp32 only
    assert r.exit_code == 0, r.output
    assert canary.read_text() == "outside" and not os.path.lexists(out / LOCK_NAME)
    assert not (out / "dense_b0" / "model.int8.onnx").exists()
    assert "removed dense_b0/model.int8.onnx (no longer listed)" in r.stderr
    assert mine.read_text() == "keep me"
    entry = mf.load(out)["models"][0]
    assert {f["precision"] for f in entry["files"]} == {"fp32"}
    assert all(sha256_file(out / f["path"]) == f["sha256"] for f in entry["files"])


def test_two_concurrent_builds_into_one_folder_take_turns(tmp_path):
    """Both builds start while the folder is locked, wait (saying who holds it), then both commit:
    the manifest lists both models and every file matches it."""
    out = tmp_path / "zoo"
    procs = []
    with artifacts_lock(out, what="the test's holder"):
        for name in ("dense_b0", "dense_b1"):
            procs.append(subprocess.Popen(
                zoo_cmd("build", name, "--input-dim", "32", "--no-verify", "--no-bench", "--artifacts", str(out)),
                cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True))
        for p in procs:  # each says it waits, naming the holder, before doing any work
            first = p.stderr.readline()
            assert first.startswith("waiting for pid ") and "the test's holder" in first, first
            assert p.poll() is None
        assert not (out / "manifest.json").exists()
    for p in procs:
        rest = p.stderr.read()
        assert p.wait(timeout=600) == 0, rest
    manifest = mf.load(out)
    assert [m["model"] for m in manifest["models"]] == ["dense_b0", "dense_b1"]
    for m in manifest["models"]:
        for f in m["files"]:
            assert sha256_file(out / f["path"]) == f["sha256"], f["path"]
    assert leftover_temporaries(out) == []


@pytest.mark.parametrize("option", [["--seed", "3"], ["--flavor", "edifice"], ["--input-dim", "64"],
                                    ["--num-classes", "5"], ["--phi", "1"], ["--opset", "19"],
                                    ["--exporter", "torchscript"], ["--precision", "fp32,int8"],
                                    ["--artifacts", "x"], ["--out", "x"]])
def test_check_refuses_the_options_it_would_ignore(tmp_path, option):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(mf.empty_manifest()))
    names = [] if option[0] == "--phi" else ["dense_b0"]
    r = runner.invoke(cli, ["build", *names, "--check", str(manifest), *option])
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: zoo build: --check rebuilds with the options recorded in the manifest")
    assert option[0] in r.stderr or (option[0] == "--out" and "--artifacts" in r.stderr)
    assert not (tmp_path / "x").exists()
