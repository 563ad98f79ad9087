"""The cache's layout, its per-artifact locks and its views.

::

    locks/blob-<sha256>.lock, locks/view-<name>.lock   empty; flock()ed by the writer of that artifact
    blobs/sha256/<2 hex>/<sha256>          every file ever pulled, named by its content hash
    models/<name>/manifest.json            a readable view of one model, laid out like an
    models/<name>/<name>/model.onnx        artifacts folder (``zoo verify --artifacts`` runs on it);
    models/<name>/<name>/test_data_set_0/  real files, copied from the blobs (never links)
    sources/<key>.json                     the last verified manifest of each remote source

Readers of verified files take no lock (a read-only cache serves them); a writer locks only the
blob or view it writes, so a slow download never holds up a reader or another model. Views are
assembled in a temporary folder and renamed into place whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, ZooError, cut
from ..fsutil import TMP_PREFIX
from . import config
from .config import CACHE_ENV, HubError, Progress, UnsafePathError, first_line, quiet
from .paths import Dir, safe_name
from .entries import parse_manifest

_SHA = re.compile(r"[0-9a-f]{64}")


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    if cache_dir not in (None, ""):
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "zoo"
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home) or os.path.realpath(home) == "/":
        # ~/.cache/zoo would be /.cache/zoo (the file system's root) or relative to the working folder
        shown = "unset" if "HOME" not in os.environ else f"{cut(home, 80)!r}"
        raise InputError(f"no home folder for the cache ($HOME is {shown}); choose one with ${CACHE_ENV} "
                         "(or --cache-dir)")
    return Path(home) / ".cache" / "zoo"


@contextlib.contextmanager
def file_errors(what: str):
    """Turn a failed read or write of a local file (permissions, a full disk) into one line."""
    try:
        yield
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise HubError(f"{what}: {e.strerror or first_line(e)}{where}") from None


class Cache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_cache_dir(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"cache dir {self.root} is not a folder")
        self._dir: Dir | None = None
        self._made: list[Path] = []  # folders (the root and its parents) that dir(create=True) made

    # -- opening (lazily; a read needs no write access, a write creates what it needs)

    def dir(self, create: bool = False) -> Dir | None:
        if self._dir is None:
            if not create and not self.root.is_dir():
                return None
            if create:
                p = self.root.absolute()
                while not os.path.lexists(p) and p != p.parent:
                    self._made.append(p)
                    p = p.parent
            self._dir = Dir.open_root(self.root, f"cache {self.root}", create=create)
        return self._dir

    def take_back_folders(self) -> None:
        """After a failed write: remove the cache folder (and its parents) this object created, as
        long as they are empty, so that a failed first pull leaves no trace."""
        if not self._made:
            return
        root = self.dir()
        if root is not None:
            with contextlib.suppress(OSError):
                os.rmdir("locks", dir_fd=root.fd)  # only if empty
        self.close()
        for p in self._made:  # deepest first; rmdir removes only empty folders, never a link's target
            try:
                os.rmdir(p)
            except OSError:
                break
        self._made = []

    def close(self) -> None:
        if self._dir is not None:
            self._dir.close()
            self._dir = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.take_back_folders()  # a failed first pull leaves no cache folder behind
        self.close()

    def sub(self, rel: str, create: bool = False) -> Dir | None:
        root = self.dir(create)
        if root is None:
            return None
        return root.sub(rel, create=True) if create else root.try_sub(rel)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def view(self, name: str) -> Path:
        return self.models / safe_name(name)

    @staticmethod
    def blob_rel(sha: str) -> tuple[str, str]:
        if not _SHA.fullmatch(sha):
            raise ManifestError(f"not a sha256: {sha[:80]!r}")
        return f"blobs/sha256/{sha[:2]}", sha

    # -- locks

    @contextlib.contextmanager
    def lock(self, kind: str, key: str, progress: Progress = quiet, budget: config.Deadline | None = None):
        """An exclusive flock on ``locks/<kind>-<key>.lock`` (created without following a link),
        waited for no longer than ``budget``; the holder removes the file when it is done."""
        with self.sub("locks", create=True) as locks:
            name = f"{kind}-{key}.lock"
            fd = self._acquire(locks, name, f"another zoo process writing {kind} {key[:16]} in the cache "
                                            f"{self.root}", progress, budget)
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=locks.fd)  # still ours: only a holder ever removes it
                os.close(fd)  # releases the lock

    @staticmethod
    def _acquire(locks: Dir, name: str, who: str, progress: Progress, budget: config.Deadline | None) -> int:
        import fcntl

        waited = 0.0
        while True:
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644,
                             dir_fd=locks.fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link planted in place of the lock
                    raise UnsafePathError(f"{locks.path / name} is a link; refusing to follow it "
                                          "(it could lead outside the cache)") from None
                raise
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafePathError(f"{locks.path / name} is not a regular file; refusing it")
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if not waited:
                            progress(f"waiting for {who} ...")
                        if budget is not None:
                            budget.check(f"waiting for {who}")
                        pause = min(0.5, 0.02 + waited / 10, budget.remaining() if budget else 0.5)
                        time.sleep(max(pause, 0.01))
                        waited += pause
                now = locks.lstat(name)  # the holder before us may have removed the file we locked
                if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    # -- blobs, views, source records

    def open_blob(self, sha: str):
        """The verified-by-name blob as an open file, or None (missing, a link, a hard link ...)."""
        folder, name = self.blob_rel(sha)
        try:
            d = self.sub(folder)
        except (OSError, UnsafePathError):
            return None
        if d is None:
            return None
        with d:
            try:
                return d.open_read(name, single_link=True)
            except (OSError, UnsafePathError):
                return None

    def read_view_manifest(self, name: str) -> dict | None:
        """The view's manifest, parsed and checked; None when missing or not valid."""
        try:
            d = self.sub(f"models/{safe_name(name)}")
            if d is None:
                return None
            with d:
                raw = d.read_bytes(mf.MANIFEST_NAME, config.MAX_MANIFEST_BYTES)
            m = parse_manifest(raw, str(self.view(name) / mf.MANIFEST_NAME))
        except (OSError, ZooError):
            return None
        return m if len(m["models"]) == 1 and m["models"][0]["model"] == name else None

    def source_key_path(self, key: str) -> Path:
        return self.root / "sources" / f"{key}.json"

    def read_source_record(self, key: str) -> bytes | None:
        d = self.sub("sources")
        if d is None:
            return None
        with d:
            try:
                return d.read_bytes(f"{key}.json", config.MAX_MANIFEST_BYTES)
            except FileNotFoundError:
                return None

    def save_source_record(self, key: str, data: bytes) -> None:
        if self.read_source_record_quietly(key) == data:
            return  # unchanged: no write (a read-only cache stays usable online too)
        with self.sub("sources", create=True) as d:
            d.write_atomic(f"{key}.json", data, tag="source")

    def read_source_record_quietly(self, key: str) -> bytes | None:
        try:
            return self.read_source_record(key)
        except (OSError, ZooError):
            return None

    def remove_leftovers(self, d: Dir, tag: str) -> None:
        """Temporary entries of ``tag`` in ``d`` (left by a killed process; call with its lock held)."""
        mine = re.compile(re.escape(f"{TMP_PREFIX}{tag}-") + r"[0-9a-f]{12}\.part")
        for n in d.names():
            if mine.fullmatch(n):
                with contextlib.suppress(OSError):
                    d.remove(n)
