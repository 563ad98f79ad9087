"""``zoo cache list|verify|clear``: read the cache without following links, remove only its own entries."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterable

from ..builder import manifest as mf
from ..errors import ZooError
from ..fsutil import TMP_PREFIX
from ..spec import FILE_PRECISIONS as PRECISIONS
from .cache import Cache, file_errors
from .config import Progress, UnknownModelError, UnsafePathError, quiet
from .paths import hash_stream, tmp_name

_OWN = ("blobs", "models", "sources")  # the zoo's folders; anything else in the cache dir is not ours


def _views(cache: Cache) -> list[tuple[str, bool]]:
    """(name, is a real folder) for every entry of models/ that is not a temporary one."""
    d = cache.sub("models")
    if d is None:
        return []
    with d:
        return [(n, stat.S_ISDIR(d.lstat(n).st_mode)) for n in d.names() if not n.startswith(TMP_PREFIX)]


def _blobs(cache: Cache):
    """(folder Dir path, name, lstat) of every entry two levels below blobs/sha256."""
    top = cache.sub("blobs/sha256")
    if top is None:
        return
    with top:
        for sub in top.names():
            st = top.lstat(sub)
            if not stat.S_ISDIR(st.st_mode):
                yield f"blobs/sha256/{sub}", None, st
                continue
            with top.sub(sub) as d:
                for n in d.names():
                    yield f"blobs/sha256/{sub}", n, d.lstat(n)


def cache_list(cache_dir=None) -> dict:
    """The views in the cache (model, precisions, files, bytes) and the blob store's totals."""
    with Cache(cache_dir) as cache, file_errors(f"cannot read the cache {cache.root}"):
        views = []
        for name, is_dir in _views(cache):
            m = cache.read_view_manifest(name) if is_dir else None
            files = m["models"][0]["files"] if m else []
            views.append({
                "name": name, "view": str(cache.models / name),
                "precisions": [p for p in PRECISIONS if any(f["role"] == "model" and f["precision"] == p for f in files)],
                "test_data": any(f["role"] != "model" for f in files),
                "files": len(files), "bytes": sum(f["bytes"] for f in files),
                "model_sha": m["models"][0]["metadata"]["model_sha"] if m else None,
                "readable": m is not None,
            })
        blobs = [(n, st) for _, n, st in _blobs(cache)
                 if n and not n.startswith(TMP_PREFIX) and stat.S_ISREG(st.st_mode)]
        return {"cache_dir": str(cache.root), "models": views, "blobs": len(blobs),
                "blob_bytes": sum(st.st_size for _, st in blobs)}


def cache_verify(cache_dir=None, progress: Progress = quiet) -> list[dict]:
    """Re-hash every cached file: blobs against their names, view files against their manifests.

    Needs no lock and no write access. Returns one row per file with ``status`` ok | corrupt |
    missing | unreadable | leftover | unsafe (a link or special file where the zoo keeps its own).
    """
    rows = []
    with Cache(cache_dir) as cache, file_errors(f"cannot verify the cache {cache.root}"):
        for folder, name, st in _blobs(cache):
            path = str(cache.root / folder / (name or ""))
            if name is None:
                rows.append({"kind": "blob", "path": path, "status": "unsafe", "detail": "not a folder"})
            elif name.startswith(TMP_PREFIX):
                rows.append({"kind": "blob", "path": path, "status": "leftover", "detail": "temporary file"})
            elif not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                rows.append({"kind": "blob", "path": path, "status": "unsafe",
                             "detail": "a link, special file or hard-linked file; never used"})
            else:
                f = cache.open_blob(name) if len(name) == 64 else None
                ok = False
                if f is not None:
                    with f:
                        ok = hash_stream(f, st.st_size)[0] == name
                rows.append({"kind": "blob", "path": path, "status": "ok" if ok else "corrupt",
                             "detail": None if ok else "content does not hash to its name"})
        for name, is_dir in _views(cache):
            view = cache.models / name
            if not is_dir:
                rows.append({"kind": "view", "path": str(view), "status": "unsafe", "detail": "not a folder"})
                continue
            m = cache.read_view_manifest(name)
            if m is None:
                rows.append({"kind": "view", "path": str(view / mf.MANIFEST_NAME), "status": "unreadable",
                             "detail": "missing or invalid manifest"})
                continue
            with cache.sub(f"models/{name}") as vd:
                for f in m["models"][0]["files"]:
                    status, detail = _view_file(vd, f)
                    rows.append({"kind": "view", "path": str(view / f["path"]), "status": status, "detail": detail})
    return rows


def _view_file(vd, rec: dict) -> tuple[str, str | None]:
    try:
        with vd.open_read(rec["path"], single_link=True):
            pass
    except FileNotFoundError:
        return "missing", "listed in the view's manifest"
    except (UnsafePathError, OSError):
        return "unsafe", "a link, special file or hard-linked file"
    if vd.matches(rec["path"], rec):
        return "ok", None
    return "corrupt", "size or sha256 differs from the manifest"


def cache_clear(names: Iterable[str] | None = None, cache_dir=None, progress: Progress = quiet) -> dict:
    """Remove the named views (and blobs no view uses any more), or everything the zoo put there.

    Only entries of the zoo's own folders (blobs/, models/, sources/) are removed, whatever else
    lives in the cache dir; the walk goes through folder descriptors, so a planted link is removed
    as a link and whatever it points to is never touched.
    """
    names = list(dict.fromkeys(names or []))
    counts = {"files": 0, "bytes": 0}
    with Cache(cache_dir) as cache, file_errors(f"cannot clear the cache {cache.root}"):
        root = cache.dir()
        if root is None:
            if names:
                raise UnknownModelError(f"{', '.join(names)}: not in the cache {cache.root} (it is empty)")
            return {"cache_dir": str(cache.root), "removed": [], **counts}
        if not names:
            for sub in _OWN:
                if root.lstat(sub) is not None:
                    root.remove(sub, counts)
            return {"cache_dir": str(cache.root), "removed": ["all"], **counts}
        cached = [n for n, _ in _views(cache)]
        missing = [n for n in names if n not in cached]
        if missing:
            raise UnknownModelError(f"{', '.join(missing)}: not in the cache {cache.root}; it holds: "
                           f"{', '.join(cached) or 'nothing'}")
        with cache.sub("models") as models:
            for n in names:
                with cache.lock("view", n, progress):
                    gone = tmp_name(f"gone-{n}")
                    models.rename(n, gone)  # the view vanishes at once; a link is moved, not followed
                    models.remove(gone, counts)
        used = set()
        for n, is_dir in _views(cache):
            m = cache.read_view_manifest(n) if is_dir else None
            used |= {f["sha256"] for f in m["models"][0]["files"]} if m else set()
        for folder, name, _ in list(_blobs(cache)):
            if name is None or name in used:
                continue
            with contextlib.suppress(FileNotFoundError), cache.sub(folder) as d:
                if len(name) == 64 and not name.startswith(TMP_PREFIX):
                    with cache.lock("blob", name, progress):
                        d.remove(name, counts)
                else:
                    d.remove(name, counts)
        with cache.sub("blobs/sha256") if root.lstat("blobs") else contextlib.nullcontext() as top:
            for sub in top.names() if top else []:
                with contextlib.suppress(OSError):
                    top_rmdir(top, sub)
        return {"cache_dir": str(cache.root), "removed": names, **counts}


def top_rmdir(top, sub: str) -> None:
    import os

    os.rmdir(sub, dir_fd=top.fd)  # only empty folders; a link is not a folder and raises


__all__ = ["ZooError", "cache_clear", "cache_list", "cache_verify"]
