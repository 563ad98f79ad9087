"""One model into the cache, verified: its blobs first (each under its own lock, taken back if the
pull fails), then its view folder (manifest.json + the model's files), assembled aside and renamed
into place whole. :mod:`zoo.hub.pull` checks the names and precisions and drives this per model."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..builder import manifest as mf
from ..errors import ZooError
from ..jsonio import dumps as strict_json
from .cache import Cache
from .config import OFFLINE_ENV, IntegrityError, OfflineError, offline
from .external import external_data_files
from .paths import copy_verified, hash_stream, tmp_name
from .plan import fetched

WEIGHT_ROLES = ("weights", "train_record")  # a trained model's safetensors file and its training record


@dataclass
class PullResult:
    name: str
    precision: str
    path: Path  # the model file in the view
    view: Path  # the view folder (an artifacts folder: manifest.json + <name>/...)
    source: str
    status: str  # "downloaded" (something was fetched) | "cached"
    files: list[dict] = field(default_factory=list)  # path, bytes, sha256, role, precision, status
    version: int | None = None  # the release version (None: an unversioned source)
    digest: str | None = None  # the version's content digest, sha256:<64 hex>
    trust: str = "unverified"  # "verified": TUF metadata and model signature checked against a trust anchor

    @property
    def fetched_bytes(self) -> int:
        return sum(f["bytes"] for f in self.files if f["status"] == "downloaded")

    def summary(self) -> dict:
        return {"name": self.name, "precision": self.precision, "status": self.status, "path": str(self.path),
                "view": str(self.view), "source": self.source, "fetched_bytes": self.fetched_bytes,
                "version": self.version, "digest": self.digest, "trust": self.trust, "files": self.files}



class ModelPull:
    """One model into the cache: blobs first (each under its own lock), then the view, whole."""

    def __init__(self, src, cache: Cache, manifest, entry, model_rec, progress, budget, by_blob: bool = False):
        self.src, self.cache, self.entry, self.model_rec, self.by_blob = src, cache, entry, model_rec, by_blob
        self.progress, self.budget = progress, budget
        self.name = entry["model"]
        self.header = {k: v for k, v in manifest.items() if k != "models"}
        self.statuses: dict[str, str] = {}
        self.origin: dict[str, str] = {}  # path -> "view" | "blob": where a verified copy is
        self.created: list[str] = []  # blobs this pull added (taken back if it fails)
        self.new_dirs: list[str] = []

    def run(self, with_test_data: bool, with_weights: bool = False) -> PullResult:
        wanted = [self.model_rec]
        if with_test_data:
            wanted += [f for f in self.entry["files"] if f["role"] in ("test_input", "test_output")]
        if with_weights:
            wanted += [f for f in self.entry["files"] if f["role"] in WEIGHT_ROLES]
        current = self._current(wanted)  # no lock, no write: a read-only cache serves this
        if current is None:
            try:
                wanted = self._obtain_all(wanted)
                with self.cache.lock("view", self.name, self.progress, self.budget):
                    if self._current(wanted) is None:
                        self._build_view(wanted)
            except BaseException:
                self._rollback()
                raise
        else:
            wanted = current
        files = [dict(r, status=self.statuses.get(r["path"], "cached")) for r in wanted]
        view = self.cache.view(self.name)
        return PullResult(name=self.name, precision=self.model_rec["precision"], path=view / self.model_rec["path"],
                          view=view, source=str(self.src), files=files,
                          status="downloaded" if any(f["status"] == "downloaded" for f in files) else "cached")

    # -- reading without a lock

    def _view_dir(self):
        return self.cache.sub(f"models/{self.name}")  # raises UnsafePathError for a planted link

    def _current(self, wanted: list[dict]) -> list[dict] | None:
        """The files the view serves if it already holds ``wanted`` (and the model's external data),
        verified, under a manifest equal to the source's entry; else None."""
        old = self.cache.read_view_manifest(self.name)
        if old is None or {k: v for k, v in old.items() if k != "models"} != self.header:
            return None
        kept = [f["path"] for f in old["models"][0]["files"]]
        if old["models"][0] != dict(self.entry, files=[f for f in self.entry["files"] if f["path"] in kept]):
            return None
        if any(w["path"] not in kept for w in wanted):
            return None
        vd = self._view_dir()
        if vd is None:
            return None
        with vd:
            if not all(vd.matches(f["path"], f) for f in old["models"][0]["files"]):
                return None
        extra = self._external("view", self.model_rec)
        if any(r["path"] not in kept for r in extra):
            return None
        return wanted + [r for r in extra if r not in wanted]

    def _open(self, origin: str, rec: dict):
        vd = self._view_dir() if origin == "view" else None
        if vd is not None:
            with vd:
                return vd.open_read(rec["path"], single_link=True)
        f = self.cache.open_blob(rec["sha256"]) if origin == "blob" else None
        if f is None:  # e.g. `zoo cache clear` ran meanwhile
            raise IntegrityError(f"the cached copy of {rec['path']} disappeared while it was pulled; pull again")
        return f

    def _external(self, origin: str, rec: dict) -> list[dict]:
        """The external-data records of the model ``rec``, from a stream of the verified file (the
        model is never held in memory, whatever its size)."""
        with self._open(origin, rec) as f:
            st = os.fstat(f.fileno())
            extra = external_data_files(f, rec["path"], self.entry)
            f.seek(0)
            if st.st_size != rec["bytes"] or hash_stream(f, rec["bytes"])[0] != rec["sha256"]:
                raise IntegrityError(f"the cached copy of {rec['path']} changed while it was read; pull again")
        return extra

    # -- blobs

    def _obtain_all(self, wanted: list[dict]) -> list[dict]:
        queue = list(wanted)
        i = 0
        while i < len(queue):
            rec = queue[i]
            i += 1
            if rec["path"] in self.origin:
                continue
            self.origin[rec["path"]] = self._obtain(rec)
            if rec is self.model_rec:
                queue += [r for r in self._external(self.origin[rec["path"]], rec) if r not in queue]
        return queue

    def _obtain(self, rec: dict) -> str:
        vd = self._view_dir()
        if vd is not None:
            with vd:
                if vd.matches(rec["path"], rec):
                    return "view"
        if self._blob_ok(rec):
            return "blob"
        if self.src.remote and offline():
            raise OfflineError(f"{OFFLINE_ENV}=1 and {rec['path']} is not in the cache {self.cache.root} "
                               "(or its copy there fails verification)")
        sha = rec["sha256"]
        with self.cache.lock("blob", sha, self.progress, self.budget):
            if self._blob_ok(rec):  # another process fetched it while we waited
                return "blob"
            folder, name = self.cache.blob_rel(sha)
            self._note_new_dirs(folder)
            with self.cache.sub(folder, create=True) as bd:
                tag = f"blob-{sha[:16]}"
                self.cache.remove_leftovers(bd, tag)
                existed = bd.lstat(name) is not None
                self.progress(f"fetching {rec['path']} ({rec['bytes'] / 1e6:.1f} MB) from {self.src} ...")
                tmp, f = bd.create_temp(tag)
                try:
                    with f:
                        self.src.fetch_into(fetched(rec, self.by_blob), f, self.progress, self.budget)  # size, sha256
                        os.fsync(f.fileno())
                    try:
                        bd.rename(tmp, name)
                    except FileNotFoundError:  # `zoo cache clear` removed the folder meanwhile
                        raise IntegrityError(f"the cached copy of {rec['path']} disappeared while it was pulled; "
                                             "pull again") from None
                except BaseException:
                    bd.discard(tmp)
                    raise
            if not existed:
                self.created.append(sha)
        self.statuses[rec["path"]] = "downloaded"
        return "blob"

    def _blob_ok(self, rec: dict) -> bool:
        f = self.cache.open_blob(rec["sha256"])
        if f is None:
            return False
        with f:
            return os.fstat(f.fileno()).st_size == rec["bytes"] and hash_stream(f, rec["bytes"])[0] == rec["sha256"]

    def _note_new_dirs(self, rel: str) -> None:
        root = self.cache.dir(create=True)
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if root.lstat(prefix) is None and prefix not in self.new_dirs:
                self.new_dirs.append(prefix)

    def _rollback(self) -> None:
        for sha in self.created:
            folder, name = self.cache.blob_rel(sha)
            try:
                with self.cache.lock("blob", sha):
                    bd = self.cache.sub(folder)
                    if bd is not None:  # None: `zoo cache clear` removed it already
                        with bd:
                            bd.discard(name)
            except (OSError, ZooError):
                pass
        root = self.cache.dir()
        for rel in reversed(self.new_dirs if root is not None else []):
            try:
                os.rmdir(rel, dir_fd=root.fd)  # only if empty; a link is not a folder and stays
            except OSError:
                pass

    # -- the view

    def _build_view(self, wanted: list[dict]) -> None:
        """Assemble the view in a temporary folder, then rename it into place whole."""
        keep = {r["path"]: self.origin.get(r["path"], "view") for r in wanted}
        old = self.cache.read_view_manifest(self.name)
        if old is not None:  # files of this entry an earlier pull put there (other precisions, test data)
            old_recs = {(f["path"], f["sha256"], f["bytes"]) for f in old["models"][0]["files"]}
            vd = self._view_dir()
            with vd or contextlib.nullcontext():
                for f in self.entry["files"]:
                    if f["path"] not in keep and (f["path"], f["sha256"], f["bytes"]) in old_recs \
                            and vd is not None and vd.matches(f["path"], f):
                        keep[f["path"]] = "view"
        files = [f for f in self.entry["files"] if f["path"] in keep]
        view_manifest = dict(self.header, models=[dict(self.entry, files=files)])
        mf.validate(view_manifest, str(self.cache.view(self.name) / mf.MANIFEST_NAME))
        self._note_new_dirs("models")
        tag = f"view-{self.name}"
        with self.cache.sub("models", create=True) as models:
            self.cache.remove_leftovers(models, tag)
            tmp = tmp_name(tag)
            os.mkdir(tmp, 0o755, dir_fd=models.fd)
            try:
                with models.sub(tmp) as tv:
                    for rec in files:
                        with self._open(keep[rec["path"]], rec) as src_file:
                            copy_verified(src_file, tv, rec["path"], rec, tag="copy")
                    tv.write_atomic(mf.MANIFEST_NAME, (strict_json(view_manifest) + "\n").encode())
                self._swap(models, tmp, tag)
            except BaseException:
                if models.lstat(tmp) is not None:
                    models.remove(tmp)
                raise

    def _swap(self, models, tmp: str, tag: str) -> None:
        if models.lstat(self.name) is None:
            models.rename(tmp, self.name)
            return
        old = tmp_name(tag)
        models.rename(self.name, old)  # a link here was refused earlier; a rename never follows one
        try:
            models.rename(tmp, self.name)
        except BaseException:
            models.rename(old, self.name)
            raise
        models.remove(old)


__all__ = ["ModelPull", "PullResult", "WEIGHT_ROLES"]
