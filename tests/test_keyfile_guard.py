"""``zoo keygen`` and git (issue 35): a private key is not written where ``git add .`` would take it
(inside a work tree, not git-ignored) unless --force; ignored paths and folders outside a work tree
are fine. Real git repositories in tmp folders."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from zoo.cli import cli
from zoo.keyfile_guard import check_not_in_git_worktree, git_work_tree


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "project"
    r.mkdir()
    _git("init", "-q", cwd=r)
    return r


def _keygen(*args):
    return CliRunner().invoke(cli, ["keygen", *map(str, args)])


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_keygen_refuses_a_key_git_would_commit(repo):
    key = repo / "keys" / "zoo.key"
    key.parent.mkdir()
    r = _keygen("--out", key)
    assert r.exit_code == 2, r.output
    line = _error_line(r.output)
    assert line.startswith("Error: zoo keygen: ") and str(repo) in line and "--force" in line and ".gitignore" in line
    assert sorted(key.parent.iterdir()) == []  # nothing written, not even the public half

    r = _keygen("--out", key, "--force")
    assert r.exit_code == 0, r.output
    assert key.is_file() and (key.parent / "zoo.key.pub").is_file()


def test_an_ignored_path_or_a_folder_outside_git_is_fine(repo, tmp_path):
    (repo / ".gitignore").write_text("*.key\n")
    r = _keygen("--out", repo / "zoo.key")
    assert r.exit_code == 0, r.output
    assert (repo / "zoo.key").is_file()
    outside = tmp_path / "elsewhere" / "release.key"
    outside.parent.mkdir()
    assert git_work_tree(outside) is None
    r = _keygen("--out", outside)
    assert r.exit_code == 0, r.output


def test_a_linked_worktree_counts_as_a_work_tree(repo, tmp_path):
    # `git worktree add` leaves a .git *file*; the guard must see it as git does.
    (repo / "README").write_text("x\n")
    _git("add", "README", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "x", cwd=repo)
    wt = tmp_path / "linked"
    _git("worktree", "add", "-q", str(wt), "-b", "other", cwd=repo)
    assert (wt / ".git").is_file() and git_work_tree(wt / "sub" / "zoo.key") == wt.resolve()
    with pytest.raises(ValueError, match="git work tree"):
        check_not_in_git_worktree(wt / "zoo.key")
    check_not_in_git_worktree(wt / "zoo.key", force=True)  # no error


def test_publisher_keys_are_guarded_too(repo):
    # --publisher writes root.key, targets.key and online.key into OUT (a folder).
    r = _keygen("--publisher", "--out", repo / "keys")
    assert r.exit_code == 2, r.output
    assert "--force" in _error_line(r.output) and not (repo / "keys").exists()
    (repo / ".gitignore").write_text("/keys/\n")
    (repo / "keys").mkdir()
    r = _keygen("--publisher", "--out", repo / "keys")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (repo / "keys").glob("*.key")) == ["online.key", "root.key", "targets.key"]
