"""Step 2 of a pull: what a source offers, verified. The TUF client is python-tuf's ``Updater``.

A source is one of three kinds:

- a **TUF mirror** (``metadata/`` beside ``manifest.json``, what ``zoo publish`` writes): with a
  trust anchor, python-tuf's ``ngclient.Updater`` refreshes root -> timestamp -> snapshot -> targets
  through the zoo's transport (:class:`ZooFetcher`: the source's deadline, speed floor, redirect
  policy, folder sources) and keeps what verified in the anchor's state folder; rollback, freeze,
  mix-and-match, fast-forward and endless data are python-tuf's checks, not the zoo's. Without an
  anchor the same files are read unverified (versions, never trust) and nothing is kept;
- a **pre-TUF mirror** (``index.json`` of an older zoo): read unverified, with a note; refused
  with an anchor (its publisher upgrades it by publishing once with keys);
- a **plain folder or server** (a build's ``artifacts/``, a static copy): its ``manifest.json``.

The result is a :class:`Catalogue`: versions per model from the targets metadata, and the means to
fetch a version's manifest and signature verified against their TUF target hashes. The trusted
half (python-tuf's Updater, its transport, the offline state) is :mod:`zoo.hub.tufclient`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from . import config, repo
from ..errors import ManifestError
from .config import OFFLINE_ENV, Deadline, IntegrityError, OfflineError, Progress, SourceError, UnknownModelError, offline


@dataclass
class Version:
    name: str
    version: int
    digest: str
    manifest: tuple  # (target path, TargetFile)
    signature: tuple | None  # (target path, TargetFile)
    extra: dict = field(default_factory=dict)  # other targets of this version: path -> TargetFile


@dataclass
class Catalogue:
    src: object
    kind: str  # "tuf" | "legacy" | "plain"
    trusted: bool = False
    versions: dict[str, dict[int, Version]] = field(default_factory=dict)
    manifest: dict | None = None  # a plain source's manifest.json
    targets_keys: list = field(default_factory=list)  # SSlibKeys allowed to sign model versions
    targets_threshold: int = 1
    timestamp_version: int | None = None
    expires: str | None = None
    read: object = None  # rel, limit -> bytes (the source, or offline the cache)

    def names(self) -> list[str]:
        if self.kind == "plain":
            return [m["model"] for m in self.manifest["models"]]
        return sorted(self.versions)

    def find(self, name: str, spec) -> Version:
        """The version of ``name`` at ``spec``: None (the latest), a number, or a ``sha256:`` digest."""
        vs = self.versions.get(name)
        if not vs:
            raise UnknownModelError(f"model {name!r} is not offered by {self.src}; it offers: "
                                    f"{', '.join(self.names()) or 'no models'}")
        if spec is None:
            return vs[max(vs)]
        for v in vs.values():
            if v.version == spec or v.digest == spec:
                return v
        raise UnknownModelError(f"{name}@{spec} is not published at {self.src} (versions: "
                                f"{', '.join(str(v) for v in sorted(vs))})")

    def target(self, tf_pair, limit: int) -> bytes:
        """A target's bytes, checked against its TUF length and sha256 (python-tuf's check)."""
        from tuf.api.exceptions import LengthOrHashMismatchError

        path, tf = tf_pair
        data = self.read(path, min(limit, tf.length))
        try:
            tf.verify_length_and_hashes(data)
        except LengthOrHashMismatchError:
            raise IntegrityError(f"{self.src._where(path)} differs from its length or sha256 in the mirror's "
                                 "targets metadata; refusing it") from None
        return data

    def summary(self) -> dict[str, list[dict]]:
        return {n: [{"version": v.version, "digest": v.digest, "signed": v.signature is not None,
                     "verified": self.trusted} for _, v in sorted(vs.items())] for n, vs in self.versions.items()}


def read_or_none(src, rel: str, limit: int, progress: Progress, budget: Deadline) -> bytes | None:
    """A small file of the source, or None where it has none (a folder's missing file, HTTP 404)."""
    try:
        return src.read_small(rel, limit, progress, budget)
    except FileNotFoundError:
        return None
    except SourceError as e:
        if "HTTP 404" in str(e) or "HTTP 403" in str(e) and rel.startswith(repo.METADATA + "/"):
            return None
        raise


# --------------------------------------------------------------------------------------------------
# Opening a source


def open_catalogue(src, anchor, *, versioned: bool = True, cache=None, progress: Progress = config.quiet,
                   budget: Deadline | None = None) -> Catalogue:
    """What ``src`` offers; verified against ``anchor`` (a :class:`zoo.hub.trust.Anchor`) when given.
    Without an anchor and unless ``versioned`` (a pinned or locked request), the source's plain
    ``manifest.json``: its latest files, as any static consumer reads them."""
    budget = budget or Deadline()
    if anchor is not None:
        from .tufclient import trusted_catalogue

        return trusted_catalogue(src, anchor, progress, budget)
    if not versioned:
        if src.remote and offline():
            return Catalogue(src, "plain", manifest=_cached_manifest(src, cache))
        try:
            return Catalogue(src, "plain", manifest=src.read_manifest(progress, budget))
        except SourceError as e:
            if src.remote and cache is not None and cache.read_source_record_quietly(src.key) is not None:
                raise SourceError(f"{e}; set {OFFLINE_ENV}=1 to use what is cached") from None
            raise
    return _untrusted(src, cache, progress, budget)


def _reader(src, progress, budget):
    def read(rel: str, limit: int) -> bytes:
        data = read_or_none(src, rel, limit, progress, budget)
        if data is None:
            raise SourceError(f"{src._where(rel)}: missing (the mirror's metadata lists it)")
        return data
    return read


def _untrusted(src, cache, progress, budget) -> Catalogue:
    if src.remote and offline():
        return Catalogue(src, "plain", manifest=_cached_manifest(src, cache))
    raw = read_or_none(src, repo.meta_name("timestamp"), repo.MAX_METADATA_BYTES, progress, budget)
    if raw is not None:
        return _unverified_walk(src, raw, progress, budget)
    from .release import INDEX_NAME, MAX_INDEX_BYTES, parse_index

    raw = read_or_none(src, INDEX_NAME, MAX_INDEX_BYTES, progress, budget)
    if raw is not None:
        progress(f"note: {src} has a pre-TUF {INDEX_NAME} (an older zoo published it): its versions are read "
                 "without a signature check; its publisher upgrades it by publishing once with keys")
        env = parse_index(raw, src._where(INDEX_NAME))
        cat = Catalogue(src, "legacy", read=_reader(src, progress, budget))
        for name, vs in env["signed"]["models"].items():
            for r in vs:
                cat.versions.setdefault(name, {})[r["version"]] = Version(name, r["version"], r["digest"],
                                                                          (r["manifest"], _HashOnly(r["manifest_sha256"])),
                                                                          None)
        return cat
    return Catalogue(src, "plain", manifest=src.read_manifest(progress, budget))


class _HashOnly:
    """A pre-TUF index's record of a file: a sha256, no length."""

    def __init__(self, sha: str):
        self.hashes, self.length = {"sha256": sha}, config.MAX_MANIFEST_BYTES

    def verify_length_and_hashes(self, data: bytes) -> None:
        from tuf.api.exceptions import LengthOrHashMismatchError

        if hashlib.sha256(data).hexdigest() != self.hashes["sha256"]:
            raise LengthOrHashMismatchError("sha256 mismatch")


def _unverified_walk(src, ts_raw: bytes, progress, budget) -> Catalogue:
    """timestamp -> snapshot -> targets, parsed and cross-checked but not verified: no anchor."""
    read = _reader(src, progress, budget)
    ts = repo.parse(ts_raw, "timestamp", src._where(repo.meta_name("timestamp")))
    sm = ts.signed.snapshot_meta
    rel = repo.meta_name("snapshot", sm.version)
    raw = read(rel, repo.MAX_METADATA_BYTES)
    _meta_check(sm, raw, src._where(rel))
    snap = repo.parse(raw, "snapshot", src._where(rel))
    tm = snap.signed.meta.get("targets.json")
    if tm is None:
        raise ManifestError(f"{src._where(rel)} names no targets.json")
    rel = repo.meta_name("targets", tm.version)
    raw = read(rel, repo.MAX_METADATA_BYTES)
    _meta_check(tm, raw, src._where(rel))
    targets = repo.parse(raw, "targets", src._where(rel))
    if targets.signed.version != tm.version or snap.signed.version != sm.version:
        raise ManifestError(f"{src}: the metadata's versions disagree (snapshot or targets)")
    return _catalogue(src, "tuf", False, targets.signed, read, None, ts.signed)


def _meta_check(meta, data: bytes, where: str) -> None:
    from tuf.api.exceptions import LengthOrHashMismatchError

    try:
        meta.verify_length_and_hashes(data)
    except LengthOrHashMismatchError:
        raise IntegrityError(f"{where} differs from the length or hash its parent metadata gives") from None


def _catalogue(src, kind, trusted, targets, read, root, timestamp) -> Catalogue:
    cat = Catalogue(src, kind, trusted=trusted, read=read)
    for name, vs in repo.versions_of_targets(targets.targets).items():
        from .paths import safe_name

        safe_name(name, f"{src}: model name")
        for v, rec in vs.items():
            if type(rec.get("digest")) is not str:
                raise ManifestError(f"{src}: {name} version {v} has no digest in the targets metadata")
            cat.versions.setdefault(name, {})[v] = Version(name, v, rec["digest"], rec["manifest"], rec["signature"],
                                                           rec["extra"])
    if root is not None:
        role = root.roles["targets"]
        cat.targets_keys = [root.keys[k] for k in role.keyids if k in root.keys]
        cat.targets_threshold = role.threshold
    if timestamp is not None:
        cat.timestamp_version = timestamp.version
        cat.expires = timestamp.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return cat


def _cached_manifest(src, cache) -> dict:
    from .entries import parse_manifest

    where = str(cache.source_key_path(src.key))
    try:
        raw = cache.read_source_record(src.key)
    except OSError as e:
        raise ManifestError(f"{where}: unreadable ({config.first_line(e)})") from None
    if raw is None:
        raise OfflineError(f"{OFFLINE_ENV}=1 and the cache {cache.root} holds no manifest from {src}; pull once online "
                           "first")
    return parse_manifest(raw, where)


__all__ = ["Catalogue", "Version", "open_catalogue", "read_or_none"]
