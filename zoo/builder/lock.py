"""One writer at a time per artifacts folder: an advisory lock on ``ARTIFACTS/.zoo-lock``.

A second ``zoo build`` (or a ``zoo verify``/``zoo bench`` recording into the same manifest) waits
for the first and says so on stderr, naming the holder. The lock is ``flock`` on a file that is
never deleted (deleting a lock file lets two processes lock two different files); the kernel
drops it when the holder exits, however it exits, so a killed build never leaves the folder locked.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

LOCK_NAME = ".zoo-lock"


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def artifacts_lock(folder: str | os.PathLike, progress: Callable[[str], None] = lambda m: None,
                   what: str | None = None):
    """Hold the folder's lock for the block, waiting (with one line on ``progress``) while another
    process holds it. ``what`` describes this holder to the waiters (default: the command line)."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for {_holder(fd)} to finish with {folder} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({me})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
