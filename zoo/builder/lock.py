"""One writer at a time per artifacts folder: an advisory lock on the folder itself.

A second ``zoo build`` (or a ``zoo verify``/``zoo bench`` recording into the same manifest) waits
for the first and says so on stderr, naming the holder. The lock is ``flock`` on the artifacts
folder's own descriptor: there is no lock file to publish, to plant a link in place of, or to
delete too early, and the kernel drops the lock when the holder exits, however it exits, so a
killed build never leaves the folder locked.

Who holds the lock is told in a note, ``.zoo-lock``, that exists only while the lock is held
(a build killed with SIGKILL leaves it behind; the next holder replaces it and removes it). The
note is written under a temporary name and renamed into place, so whatever was planted under its
name (a link to a file outside, a FIFO) is replaced as a name, never opened or followed; waiters
read it without following a link and without blocking. On taking the lock, a commit that an
earlier build did not finish is completed or undone first (:func:`zoo.builder.commit.recover`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Callable

from ..fsutil import TMP_PREFIX

LOCK_NAME = ".zoo-lock"  # the holder's note, present only while the lock is held
_NOTE_MAX = 4096


def _holder(dir_fd: int) -> str:
    """The note of the process holding the lock ("another process" when there is none to read)."""
    try:
        fd = os.open(LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return "another process"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "another process"
        text = os.pread(fd, _NOTE_MAX, 0).decode(errors="replace").strip()
        return "".join(c if c.isprintable() else "?" for c in text)[:300] or "another process"
    except OSError:
        return "another process"
    finally:
        os.close(fd)


def _write_note(dir_fd: int, text: str) -> int | None:
    """Put the note in place (temporary name, then rename); its inode, or None where it cannot be
    written (a read-only folder: the lock still holds, only the waiters' message is plainer)."""
    tmp = f"{TMP_PREFIX}lock-{secrets.token_hex(6)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode())
            ino = os.fstat(f.fileno()).st_ino
        os.replace(tmp, LOCK_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return ino
    except OSError:  # e.g. a folder planted under the note's name
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        return None


def _remove_note(dir_fd: int, ino: int | None) -> None:
    """Remove the note if it is still the one this holder wrote (never anything else)."""
    if ino is None:
        return
    with contextlib.suppress(OSError):
        st = os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_ino == ino:
            os.unlink(LOCK_NAME, dir_fd=dir_fd)


@contextlib.contextmanager
def artifacts_lock(folder: str | os.PathLike, progress: Callable[[str], None] = lambda m: None,
                   what: str | None = None, recover: bool = True):
    """Hold the folder's lock for the block, waiting (with one line on ``progress``) while another
    process holds it. ``what`` describes this holder to the waiters (default: the command line).
    With ``recover`` an unfinished commit found in the folder is completed or undone first."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ino = None
    try:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for {_holder(dir_fd)} to finish with {folder} ...")
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
        me = what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        ino = _write_note(dir_fd, f"pid {os.getpid()} ({me})\n")
        if recover:
            from .commit import recover as recover_commit

            recover_commit(folder, progress)
        yield
    finally:
        _remove_note(dir_fd, ino)  # before the lock is released: the next holder's note is never removed
        os.close(dir_fd)  # releases the lock
