"""Where ``zoo keygen`` may write a private key: not where ``git add .`` would pick it up.

A key written inside a git work tree is one careless commit away from being published, so
``zoo keygen --out PATH`` refuses such a PATH unless git already ignores it or ``--force`` is given
(ssh-keygen users expect at least a warning; a refusal is harder to miss in a script).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import InputError

GIT_TIMEOUT_S = 10


def git_work_tree(path: str | os.PathLike) -> Path | None:
    """The top folder of the git work tree holding ``path`` (a file that may not exist yet), or None.
    Found by the ``.git`` entry git itself looks for (a folder, or a file in a linked worktree), so
    it needs no git program."""
    folder = Path(path).expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists
        folder = folder.parent
    folder = folder.resolve()
    for d in (folder, *folder.parents):
        if os.path.lexists(d / ".git"):
            return d
    return None


def git_ignores(top: Path, path: str | os.PathLike) -> bool:
    """Whether git would leave ``path`` out of ``git add`` (``git check-ignore``); False when git is
    missing or cannot say."""
    git = shutil.which("git")
    if git is None:
        return False
    target = Path(path).expanduser().absolute()
    try:
        proc = subprocess.run([git, "-C", str(top), "check-ignore", "-q", "--", str(target)],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def check_not_in_git_worktree(path: str | os.PathLike, force: bool = False) -> None:
    """Raise :class:`InputError` (exit 2) when the private key ``path`` would be written inside a git
    work tree where git does not ignore it, unless ``force``."""
    if force:
        return
    top = git_work_tree(path)
    if top is None or git_ignores(top, path):
        return
    raise InputError(f"{os.fspath(path)} is inside the git work tree {top} and not git-ignored: a private key "
                     "there can be committed by mistake; write it elsewhere, add it to .gitignore, or give --force")


__all__ = ["check_not_in_git_worktree", "git_ignores", "git_work_tree"]
