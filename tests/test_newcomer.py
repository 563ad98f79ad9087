"""What a newcomer tripped over (issue 35), held by tests: skipped precisions and refused repo ids
are said, cheap checks come before hashing, ratios and sizes read right, a lockfile's folder is
not made silently, an atomic write names its target, and `zoo verify --runtimes node,web` runs
only what was asked."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_server import built, hub_env, mirror  # noqa: F401 - fixtures

from zoo.cli import cli
from zoo.fsutil import TMP_PREFIX, atomic_write_bytes


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    """Exactly one line, ``Error: ...``, last on stderr; never a traceback."""
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and result.stderr.rstrip().splitlines()[-1] == lines[0], result.stderr
    return lines[0]


# -- item 8: lockfile folders and atomic-write messages ---------------------------------------------

def test_lock_does_not_make_a_missing_folder(mirror, tmp_path):
    out = tmp_path / "nonexistent" / "dir" / "x.lock"
    r = run("lock", "dense_b0", "--from", mirror, "--out", out)
    assert r.exit_code == 2, r.output
    line = error_line(r)
    assert str(out) in line and "does not exist" in line
    assert not (tmp_path / "nonexistent").exists()
    r = run("lock", "dense_b0", "--from", mirror, "--out", tmp_path / "x.lock")  # an existing folder: written
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x.lock").read_text())["models"]["dense_b0"]["files"]


def test_an_atomic_write_that_fails_names_its_target_not_the_temporary_file(tmp_path):
    # The rename fails: the target is a folder with something in it.
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"x")
    assert e.value.filename == str(target) and TMP_PREFIX not in str(e.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    # The temporary file cannot be made (as root too: /proc takes no new files).
    with pytest.raises(OSError) as e:
        atomic_write_bytes("/proc/zoo-test.lock", b"x")
    assert e.value.filename == "/proc/zoo-test.lock" and TMP_PREFIX not in str(e.value)


def test_an_unwritable_lock_out_names_the_path_given(mirror):
    r = run("lock", "dense_b0", "--from", mirror, "--out", "/proc/zoo-test.lock")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert "/proc/zoo-test.lock" in line and TMP_PREFIX not in line
