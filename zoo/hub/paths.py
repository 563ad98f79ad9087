"""Names from strangers' manifests, and a filesystem that follows no link.

Every file and folder of the cache (and of a mirror, and of a local source below its root) is
opened relative to an open folder (``dir_fd``) with ``O_NOFOLLOW``: a symbolic link planted at any
level is refused, never followed, so nothing outside the root is read, written, renamed or
deleted through it. Files are created under fresh temporary names with ``O_EXCL`` and renamed into
place (a rename replaces a link, never writes through it); special files (FIFOs, devices) are
refused before they are read, and a regular file with a second hard link is not trusted as ours.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import InputError, cut
from ..fsutil import TMP_PREFIX
from .config import IntegrityError, UnsafePathError

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH_CHARS = 1024
MAX_NAME_CHARS = 255

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO cannot hang us
O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LINKISH = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def safe_relpath(path, what: str = "path", *, allow_tmp: bool = False) -> str:
    """Return ``path`` if it is a plain relative POSIX path; raise ``UnsafePathError`` otherwise.

    Refused: empty, absolute, UNC (``//host``, ``\\\\host``), drive letters, backslashes, ``:``,
    ``..``, ``.`` or empty components, control characters, over-long paths or components.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{what}: empty or non-text path {cut(repr(path), 80)}")
    reason = None
    if len(path) > MAX_PATH_CHARS:
        reason = f"longer than {MAX_PATH_CHARS} characters"
    elif any(ord(c) < 32 or c == "\x7f" for c in path):
        reason = "control characters"
    elif path.startswith(("//", "\\\\")):
        reason = "a UNC path"
    elif path.startswith(("/", "\\")):
        reason = "an absolute path"
    elif _DRIVE.match(path):
        reason = "a drive letter"
    elif "\\" in path:
        reason = "a backslash"
    elif ":" in path:
        reason = "a ':'"
    else:
        parts = path.split("/")
        if ".." in parts:
            reason = "a '..' component"
        elif any(p in ("", ".") for p in parts):
            reason = "an empty or '.' component"
        elif any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_CHARS for p in parts):
            reason = f"a component longer than {MAX_NAME_CHARS} bytes"
        elif not allow_tmp and any(p.startswith(TMP_PREFIX) for p in parts):
            reason = "a name the zoo keeps for temporary files"
    if reason:
        raise UnsafePathError(f"{what}: refusing unsafe path {cut(repr(path), 120)} ({reason})")
    return path


def safe_name(name, what: str = "model name") -> str:
    safe_relpath(name, what)
    if "/" in name:
        raise UnsafePathError(f"{what}: refusing {cut(repr(name), 120)} (a name, not a path)")
    return name


def _unsafe(path, what: str, detail: str = "") -> UnsafePathError:
    return UnsafePathError(f"{what}: {path} is a link or not a regular {detail or 'file or folder'}; "
                           "refusing to follow it (it could lead outside)")


def tmp_name(tag: str) -> str:
    return f"{TMP_PREFIX}{tag}-{secrets.token_hex(6)}.part"


class Dir:
    """An open folder. Every method works relative to it and follows no link below it."""

    def __init__(self, fd: int, path: Path, what: str):
        self.fd, self.path, self.what = fd, Path(path), what

    @classmethod
    def open_root(cls, path, what: str, create: bool = False) -> Dir:
        """The root itself (a link the user chose as the root is fine; nothing below it is)."""
        path = Path(path)
        if create:
            os.makedirs(path, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise InputError(f"{what} {path} is not a folder") from None
        return cls(fd, path, what)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- folders

    def sub(self, rel: str, create: bool = False) -> Dir:
        """The folder ``rel`` (POSIX, checked) below this one, created when asked."""
        fd, path = os.dup(self.fd), self.path
        try:
            for part in safe_relpath(rel, self.what, allow_tmp=True).split("/"):
                path = path / part
                try:
                    new = os.open(part, O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    new = os.open(part, O_DIR, dir_fd=fd)
                except OSError as e:
                    if e.errno in _LINKISH:
                        raise _unsafe(path, self.what, "folder") from None
                    raise
                os.close(fd)
                fd = new
        except BaseException:
            os.close(fd)
            raise
        return Dir(fd, path, self.what)

    def try_sub(self, rel: str) -> Dir | None:
        try:
            return self.sub(rel)
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    # -- files

    def open_read(self, rel: str, *, single_link: bool = False):
        """A binary file object on the regular file ``rel``; a link, FIFO or device is refused
        without blocking, and with ``single_link`` so is a file with a second hard link."""
        folder, _, name = rel.rpartition("/")
        d = self.sub(folder) if folder else self
        try:
            try:
                fd = os.open(name, O_READ, dir_fd=d.fd)
            except OSError as e:
                if e.errno in _LINKISH:
                    raise _unsafe(d.path / name, self.what) from None
                raise
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (single_link and st.st_nlink != 1):
                os.close(fd)
                kind = "a file with another hard link" if stat.S_ISREG(st.st_mode) else "not a regular file"
                raise UnsafePathError(f"{self.what}: {d.path / name} is {kind}; refusing it")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        finally:
            if d is not self:
                d.close()

    def read_bytes(self, rel: str, limit: int) -> bytes:
        with self.open_read(rel) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise IntegrityError(f"{self.path / rel} is larger than {limit:,} bytes; refusing it")
        return data

    def matches(self, rel: str, rec: dict) -> bool:
        """True if ``rel`` is a regular file with one link, of the recorded size and sha256."""
        try:
            with self.open_read(rel, single_link=True) as f:
                if os.fstat(f.fileno()).st_size != rec["bytes"]:
                    return False
                return hash_stream(f, rec["bytes"])[0] == rec["sha256"]
        except (OSError, UnsafePathError):
            return False

    def create_temp(self, tag: str):
        """``(name, file)``: a new file under a fresh temporary name (``O_EXCL``, no link followed)."""
        name = tmp_name(tag)
        fd = os.open(name, O_CREATE, 0o644, dir_fd=self.fd)
        return name, os.fdopen(fd, "wb")

    def rename(self, src: str, dst: str, dst_dir: Dir | None = None) -> None:
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=(dst_dir or self).fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)  # removes a link itself, never its target

    def discard(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.remove(name)

    def write_atomic(self, name: str, data: bytes, tag: str = "w", mode: int = 0o644) -> None:
        tmp, f = self.create_temp(tag)
        try:
            with f:
                write_all(f, data)
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            self.rename(tmp, name)
        except BaseException:
            self.discard(tmp)
            raise

    def remove(self, name: str, counts: dict | None = None) -> None:
        """Remove the entry ``name``: a folder with everything in it (walked through folder
        descriptors, so a link anywhere is removed as a link, never followed), or a file/link."""
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=self.fd)
            if counts is not None:
                counts["files"] += 1
                counts["bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
            return
        with self.sub(name) as d:
            for child in d.names():
                d.remove(child, counts)
        os.rmdir(name, dir_fd=self.fd)


def write_all(f, data) -> None:
    """Every write of a cache or mirror file goes through here (a full disk raises ``OSError``)."""
    f.write(data)


def hash_stream(f, limit: int, sink=None, chunk: int = 1 << 20) -> tuple[str, int]:
    """sha256 and length of what ``f`` holds, reading at most ``limit + 1`` bytes (a longer file
    is detected without reading all of it); ``sink`` gets every block."""
    h, n = hashlib.sha256(), 0
    while block := f.read(min(chunk, limit + 1 - n)):
        n += len(block)
        h.update(block)
        if sink is not None:
            sink(block)
        if n > limit:
            break
    return h.hexdigest(), n


def copy_verified(src, dest: Dir, rel: str, rec: dict, tag: str) -> None:
    """Copy the open file ``src`` to ``dest/rel`` through a temporary name; the rename happens only
    if what was copied has the record's size and sha256."""
    folder, _, name = rel.rpartition("/")
    d = dest.sub(folder, create=True) if folder else dest
    try:
        tmp, f = d.create_temp(tag)
        try:
            with f:
                sha, n = hash_stream(src, rec["bytes"], lambda b: write_all(f, b))
                f.flush()
                os.fsync(f.fileno())
            if n != rec["bytes"] or sha != rec["sha256"]:
                raise IntegrityError(f"{rec['path']} changed while it was copied; nothing was written")
            d.rename(tmp, name)
        except BaseException:
            d.discard(tmp)
            raise
    finally:
        if d is not dest:
            d.close()
