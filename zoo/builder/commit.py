"""A build's commit: many files and the manifest change together, or not at all, even under kill -9.

Files are staged under temporary names beside their final ones (:class:`Staging`). The commit then

1. writes the new manifest under a temporary name;
2. writes a journal, ``.zoo-commit.json``, naming every staged file, the name its previous version
   is kept under, the manifest's temporary name and the files to remove afterwards;
3. for each file: keeps the previous version (a hard link under a temporary name), then renames
   the staged file onto the final name;
4. renames the manifest into place: **the single commit point**;
5. removes the kept previous versions and the files no longer listed, then the journal.

Whoever takes the folder's lock next (:func:`zoo.builder.lock.artifacts_lock`) calls
:func:`recover` first: with a journal and the manifest's temporary file still present, the commit
did not happen and every previous version is put back (the folder is exactly as it was); with the
manifest renamed, step 5 is finished. Either way the files match the manifest, all old or all new.
Every name is opened relative to a folder descriptor, a link is never followed (a model folder
replaced by a link is refused), and a journal's paths are checked like a stranger's.

``ZOO_TEST_KILL_AFTER_STEP=k`` makes the process SIGKILL itself after the k-th step of a commit
(the test of every step's crash consistency; unset in normal use).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import signal
import stat
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import ZooError
from ..fsutil import TMP_PREFIX, open_regular

JOURNAL_NAME = ".zoo-commit.json"
MANIFEST_NAME = "manifest.json"  # the same name as manifest.MANIFEST_NAME (which imports jsonschema)
KILL_ENV = "ZOO_TEST_KILL_AFTER_STEP"
_steps = 0


def _step() -> None:
    """A point where a test may kill the process (see the module docstring)."""
    global _steps
    _steps += 1
    if os.environ.get(KILL_ENV) == str(_steps):
        os.kill(os.getpid(), signal.SIGKILL)


def _tmp_name(kind: str = "") -> str:
    return f"{TMP_PREFIX}{kind}{secrets.token_hex(8)}.part"


def _parts(rel: str) -> list[str]:
    """The components of a relative path the zoo writes; anything else is refused."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if not parts or rel.startswith("/") or any(p in ("", ".", "..") or "\x00" in p for p in parts):
        raise ZooError(f"refusing the path {rel!r}: not a plain relative path")
    return list(parts)


class Folder:
    """An artifacts folder as descriptors: subfolders are walked one component at a time without
    following links, so nothing is ever written, renamed or removed outside it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[tuple[str, ...], int] = {(): self.fd}

    def close(self) -> None:
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()

    def dir(self, parts: list[str], create: bool = False) -> int | None:
        """The descriptor of the subfolder ``parts`` (None when it is missing and not created)."""
        key: tuple[str, ...] = ()
        fd = self.fd
        for part in parts:
            key = (*key, part)
            if key in self._dirs:
                fd = self._dirs[key]
                continue
            try:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(part, 0o777, dir_fd=fd)
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ZooError(f"{self.root / '/'.join(key)} is a link or not a folder; refusing to write "
                                   "through it (remove it, or build into another folder)") from None
                raise
            self._dirs[key] = fd = sub
        return fd

    def locate(self, rel: str, create: bool = False) -> tuple[int | None, str]:
        parts = _parts(rel)
        return self.dir(parts[:-1], create), parts[-1]

    def write_new(self, dir_fd: int, data: bytes, kind: str = "") -> str:
        """``data`` in a new file under a fresh temporary name in ``dir_fd``, synced; the name."""
        name = _tmp_name(kind)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return name

    def sync(self) -> None:
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):  # not every filesystem can sync a directory
                os.fsync(fd)


def _exists(name: str, dir_fd: int | None) -> bool:
    if dir_fd is None:
        return False
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _unlink(name: str, dir_fd: int | None) -> bool:
    """Remove a file or link (a link as a link); False when there was none, or it is a folder."""
    if dir_fd is None:
        return False
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _keep_previous(name: str, old: str, dir_fd: int) -> None:
    """Keep the current version of ``name`` as ``old``: a hard link (the final name never goes
    missing), or a rename where the filesystem has no hard links."""
    try:
        os.link(name, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOTSUP, errno.EXDEV):
            raise
        os.rename(name, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


class Staging:
    """Files written beside their final names under temporary names, put in place by :meth:`commit`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder: Folder | None = None
        self.staged: dict[str, str] = {}  # relative final path -> temporary name in the same folder

    def _folder(self) -> Folder:
        if self.folder is None:
            self.folder = Folder(self.root)
        return self.folder

    def add(self, relpath: str, data: bytes) -> None:
        folder = self._folder()
        dir_fd, _ = folder.locate(relpath, create=True)
        self.staged[relpath] = folder.write_new(dir_fd, data)

    def commit(self, manifest_bytes: bytes, stale: list[str] = (), progress: Callable[[str], None] = lambda m: None):
        """Put every staged file and the manifest in place as one transaction (module docstring)."""
        folder = self._folder()
        mtmp = folder.write_new(folder.fd, manifest_bytes)
        _step()
        files = []
        for rel, tmp in self.staged.items():
            dir_fd, name = folder.locate(rel)
            files.append({"path": rel, "tmp": tmp, "old": _tmp_name("old-") if _exists(name, dir_fd) else None})
        journal = {"version": 1, "manifest_tmp": mtmp, "files": files, "stale": list(stale)}
        jtmp = folder.write_new(folder.fd, json.dumps(journal, indent=1).encode())
        os.replace(jtmp, JOURNAL_NAME, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
        folder.sync()
        _step()
        try:
            for f in files:
                dir_fd, name = folder.locate(f["path"])
                if f["old"]:
                    _keep_previous(name, f["old"], dir_fd)
                    _step()
                os.replace(f["tmp"], name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                _step()
            folder.sync()  # every file reaches the disk before the manifest that names it
            os.replace(mtmp, MANIFEST_NAME, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)  # the commit point
            folder.sync()
            _step()
        except BaseException:
            self.staged.clear()
            _recover(folder, progress)  # the manifest is not in place: put every previous version back
            raise
        self.staged.clear()
        _finish(folder, journal, progress)

    def abort(self) -> None:
        if self.folder is None:
            return
        for rel, tmp in self.staged.items():
            with contextlib.suppress(OSError, ZooError):
                _unlink(tmp, self.folder.locate(rel)[0])
        self.staged.clear()
        self.folder.close()
        self.folder = None


def _finish(folder: Folder, journal: dict, progress) -> None:
    """Step 5: the commit happened; drop the previous versions and the files no longer listed."""
    for f in journal["files"]:
        if f["old"] and _unlink(f["old"], folder.locate(f["path"])[0]):
            _step()
    for rel in journal["stale"]:
        try:
            dir_fd, name = folder.locate(rel)
        except ZooError:  # its folder is now a link: nothing of ours to remove there
            continue
        if _unlink(name, dir_fd):
            progress(f"removed {rel} (no longer listed)")
            _step()
    os.unlink(JOURNAL_NAME, dir_fd=folder.fd)
    folder.sync()
    _step()


def _rollback(folder: Folder, journal: dict) -> None:
    """The commit did not happen: every file back to its previous version, new files removed."""
    for f in reversed(journal["files"]):
        dir_fd, name = folder.locate(f["path"])
        if dir_fd is None:
            continue
        if f["old"]:
            if _exists(f["old"], dir_fd):
                os.replace(f["old"], name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                _unlink(f["old"], dir_fd)  # still there if it was the same file (rename of a hard link)
        elif not _exists(f["tmp"], dir_fd):  # a new file, already renamed into place
            _unlink(name, dir_fd)
    folder.sync()
    os.unlink(JOURNAL_NAME, dir_fd=folder.fd)  # before the temporary files: see recover()
    folder.sync()
    for f in journal["files"]:
        _unlink(f["tmp"], folder.locate(f["path"])[0])
    _unlink(journal["manifest_tmp"], folder.fd)


def _read_journal(folder: Folder) -> dict | None:
    try:
        with open_regular(JOURNAL_NAME, nofollow=True, dir_fd=folder.fd) as f:
            raw = f.read(16 << 20)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ZooError(f"{folder.root / JOURNAL_NAME}: cannot read the commit journal ({e.strerror or e}); "
                       "refusing to touch the folder") from None
    try:
        journal = json.loads(raw)
        tmp_ok = lambda n: isinstance(n, str) and n.startswith(TMP_PREFIX) and "/" not in n and "\x00" not in n
        assert isinstance(journal, dict) and tmp_ok(journal["manifest_tmp"])
        for f in journal["files"]:
            _parts(f["path"])
            assert tmp_ok(f["tmp"]) and (f["old"] is None or tmp_ok(f["old"]))
        for rel in journal["stale"]:
            _parts(rel)
        return journal
    except (ValueError, KeyError, TypeError, AssertionError, ZooError):
        raise ZooError(f"{folder.root / JOURNAL_NAME} is not a commit journal this zoo wrote; refusing to touch "
                       "the folder (remove it if you know where it came from)") from None


def _recover(folder: Folder, progress) -> str | None:
    journal = _read_journal(folder)
    if journal is None:
        return None
    if _exists(journal["manifest_tmp"], folder.fd):
        _rollback(folder, journal)
        progress(f"an interrupted build had not committed in {folder.root}: its previous files are back in place")
        return "rolled back"
    _finish(folder, journal, progress)
    progress(f"an interrupted build had committed in {folder.root}: its cleanup is finished")
    return "rolled forward"


def recover(root: str | os.PathLike, progress: Callable[[str], None] = lambda m: None) -> str | None:
    """Complete or undo a commit a killed build left in ``root`` (call it holding the folder's
    lock); returns "rolled back", "rolled forward" or None (nothing to do)."""
    if not os.path.lexists(Path(root) / JOURNAL_NAME):
        return None
    folder = Folder(root)
    try:
        return _recover(folder, progress)
    finally:
        folder.close()


def pending(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds an unfinished commit (readers then take the lock, which recovers it)."""
    return os.path.lexists(Path(root) / JOURNAL_NAME)
