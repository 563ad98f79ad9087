"""Atomic file writes and hashing: every artifact reaches its final name complete or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".zoo-tmp-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(fd: int) -> None:
    """Give a file made by ``mkstemp`` (0600) the mode a plain ``open`` would (0666 less the umask):
    published artifacts are served by web servers that run as another user."""
    with contextlib.suppress(OSError):  # not every filesystem has modes
        os.fchmod(fd, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` if the block succeeds.

    The temporary file lives in the same folder so that the rename is atomic; on any error it is
    removed and ``path`` keeps whatever it held before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    default_mode(fd)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Strict JSON (:func:`zoo.jsonio.dumps`: NaN and Infinity become null), written atomically."""
    from .jsonio import dumps

    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files under ``folder`` (left by a killed process; a clean run leaves none)."""
    return sorted(Path(folder).rglob(TMP_PREFIX + "*"))
