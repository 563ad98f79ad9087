"""Atomic file writes, reading and hashing: every artifact reaches its final name complete or not
at all; a file is read only when it is a regular file (a FIFO or device named like a model or a
manifest is refused before it can block) and hashed in a stream, never read whole to be hashed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError

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
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from None
    default_mode(fd)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename == tmp:
            raise _naming(e, path) from None
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """The same error naming the file the caller asked for: the temporary name means nothing to a user."""
    return type(e)(e.errno, e.strerror, os.fspath(path)) if e.errno is not None else e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_bytes(obj) -> bytes:
    """Strict JSON (:func:`zoo.jsonio.dumps`: NaN and Infinity become null), indented, one final newline."""
    from .jsonio import dumps

    return (dumps(obj, indent=2) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class NotRegularFileError(OSError):
    """A path that is not a regular file (a FIFO, a device, a folder) where a file is read."""


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, *, nofollow: bool = False, dir_fd: int | None = None):
    """The regular file ``path`` opened for reading (a binary file object); a FIFO, device or
    folder raises :class:`NotRegularFileError` without blocking (opened non-blocking, checked on
    the descriptor). ``nofollow``: a link at the last component is refused too (``ELOOP``)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"not a regular file: {os.fspath(path)}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        yield f


def read_regular(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`); over ``max_bytes``
    raises ``ValueError`` before anything is read."""
    with open_regular(path) as f:
        if max_bytes is not None and os.fstat(f.fileno()).st_size > max_bytes:
            raise ValueError(f"{os.fspath(path)} is larger than {max_bytes:,} bytes")
        return f.read() if max_bytes is None else f.read(max_bytes + 1)


class MissingInputError(InputError, FileNotFoundError):
    """A small input file that does not exist (callers with a default catch this one)."""


def read_input(path: str | os.PathLike, limit: int, what: str, *, nofollow: bool = False) -> bytes:
    """The bytes of a small file a user names (a key, a lockfile, a labels file, a trust file),
    at most ``limit`` of them, or :class:`~zoo.errors.InputError` in one line.

    It never blocks and never reads without bound: the file is opened non-blocking (a FIFO opens at
    once) and refused on its descriptor unless it is a regular file (a FIFO, ``/dev/zero``, a
    socket, a folder); its size is checked before any read (a 3 GB sparse file is refused without
    reading it) and at most ``limit + 1`` bytes are read (a file that grows meanwhile is refused
    too). ``nofollow``: a link in the last component is refused (for the zoo's own files)."""
    p = Path(os.fspath(path)).expanduser()
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise MissingInputError(f"{what} {p} does not exist") from None
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket (or a device without its driver)
            raise InputError(f"{what} {p} is not a regular file (a socket or device); refusing to read it") from None
        if e.errno == errno.ELOOP and nofollow:
            raise InputError(f"{what} {p} is a link; refusing to follow it") from None
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {p} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
                stat.S_ISBLK(st.st_mode) else "a special file"
            raise InputError(f"{what} {p} is {kind}, not a regular file; refusing to read it")
        if st.st_size > limit:
            raise InputError(f"{what} {p} is larger than {limit:,} bytes; refusing to read it")
        os.set_blocking(fd, True)
        chunks, n = [], 0
        while n <= limit:
            block = os.read(fd, limit + 1 - n)
            if not block:
                break
            chunks.append(block)
            n += len(block)
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if n > limit:
        raise InputError(f"{what} {p} is larger than {limit:,} bytes; refusing to read it")
    return b"".join(chunks)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of the regular file ``path``, streamed (a FIFO raises, it never blocks)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files under ``folder`` (left by a killed process; a clean run leaves none)."""
    return sorted(Path(folder).rglob(TMP_PREFIX + "*"))
