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
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, ZooError
from ..fsutil import TMP_PREFIX
from . import config
from .config import CACHE_ENV, HubError, Progress, UnsafePathError, first_line, quiet
from .paths import Dir, safe_name
from .source import parse_manifest

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
    return Path.home() / ".cache" / "zoo"


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

    # -- opening (lazily; a read needs no write access, a write creates what it needs)

    def dir(self, create: bool = False) -> Dir | None:
        if self._dir is None:
            if not create and not self.root.is_dir():
                return None
            self._dir = Dir.open_root(self.root, f"cache {self.root}", create=create)
        return self._dir

    def close(self) -> None:
        if self._dir is not None:
            self._dir.close()
            self._dir = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
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
    def lock(self, kind: str, key: str, progress: Progress = quiet):
        """An exclusive flock on ``locks/<kind>-<key>.lock`` (created without following a link)."""
        import fcntl

        with self.sub("locks", create=True) as locks:
            name = f"{kind}-{key}.lock"
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644,
                             dir_fd=locks.fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link planted in place of the lock
                    raise UnsafePathError(f"{locks.path / name} is a link; refusing to follow it "
                                          "(it could lead outside the cache)") from None
                raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePathError(f"{self.root}/locks/{name} is not a regular file; refusing it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another zoo process writing {kind} {key[:16]} in the cache {self.root} ...")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

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
