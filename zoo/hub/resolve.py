"""Pinned and trusted pulls: ``NAME@V``, ``NAME@sha256:...``, a lockfile, a trusted key.

With any of them, a pull goes through the mirror's ``index.json`` (see :mod:`zoo.hub.release`):
the version's manifest is checked against the index, the files are fetched by content
(``blobs/sha256/...``), never through the mutable latest-version paths. With a trusted key, before
anything is written:

1. the index's signature is checked (ECDSA, :mod:`zoo.hub.signing`), then its expiry (an expired
   index is *freeze*: refused online) and its counter against the highest this cache has seen
   from the source (a lower one is *rollback*: refused);
2. the version's manifest must have the sha256 the index gives it;
3. the version's OpenSSF model signature must verify with the key and cover exactly its files.

Every file is then checked against its sha256 on the way in, as always. The verified index,
version manifests and signatures are kept in the cache (``trust/<source key>/``) once the pull
succeeds, so ``ZOO_OFFLINE=1`` serves verified versions without the network (expiry is not
checked offline; nothing new can arrive).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import InputError, ManifestError
from . import config, lockfile, release, signing
from .config import OFFLINE_ENV, Deadline, IntegrityError, OfflineError, Progress, SourceError, UnknownModelError, offline
from .signing import SignatureError
from .source import Source, parse_manifest
from .trust import trusted_key  # noqa: F401 - pull asks for it here


@dataclass
class Plan:
    manifest: dict  # the header and this one entry (a version's manifest, or the source's)
    entry: dict
    by_blob: bool  # fetch files from blobs/sha256/... (a versioned mirror)


@dataclass
class Resolution:
    plans: list[Plan]
    key: str | None
    _keep: dict[str, bytes] = field(default_factory=dict)  # verified metadata to keep in the cache

    def tuples(self) -> list[tuple[dict, dict, bool]]:
        return [(p.manifest, p.entry, p.by_blob) for p in self.plans]

    def commit(self, cache, src: Source) -> None:
        """After a successful pull: keep what was verified (the counter for rollback checks, and
        the metadata ``ZOO_OFFLINE=1`` reads)."""
        if not self._keep:
            return
        with cache.sub(_state_dir(src), create=True) as d:
            for name, data in self._keep.items():
                try:
                    same = d.read_bytes(name, release.MAX_INDEX_BYTES) == data
                except (FileNotFoundError, IntegrityError):
                    same = False
                if not same:
                    d.write_atomic(name, data, tag="trust")


def _state_dir(src: Source) -> str:
    return f"trust/{src.key}"


def lock_source(lock) -> str:
    return lockfile.read_lock(lock)["source"]


def wanted(names, lock, key) -> bool:
    return bool(lock) or key is not None or any("@" in str(n) for n in names or [])


def read_bytes(src: Source, rel: str, limit: int, progress: Progress, budget: Deadline) -> bytes | None:
    """A small file of the source (None when it has none), bounded in size and time."""
    try:
        return src.read_small(rel, limit, progress, budget)
    except FileNotFoundError:
        return None
    except SourceError as e:
        if "HTTP 404" in str(e):
            return None
        raise


class _Reader:
    """The source's (or, offline, the cache's) index and version files, checked as they are read."""

    def __init__(self, src: Source, cache, key, progress, budget):
        self.src, self.cache, self.key, self.progress, self.budget = src, cache, key, progress, budget
        self.offline = src.remote and offline()
        self.keep: dict[str, bytes] = {}

    def _cached(self, name: str, limit: int) -> bytes | None:
        d = self.cache.sub(_state_dir(self.src))
        if d is None:
            return None
        with d:
            try:
                return d.read_bytes(name, limit)
            except (FileNotFoundError, IntegrityError):
                return None

    def get(self, rel: str, keep_as: str, limit: int) -> bytes | None:
        if self.offline:
            return self._cached(keep_as, limit)
        data = read_bytes(self.src, rel, limit, self.progress, self.budget)
        if data is not None:
            self.keep[keep_as] = data
        return data

    def index(self) -> dict | None:
        where = f"{self.src._where(release.INDEX_NAME)}"
        raw = self.get(release.INDEX_NAME, "index.json", release.MAX_INDEX_BYTES)
        if raw is None:
            if self.offline:
                raise OfflineError(f"{OFFLINE_ENV}=1 and the cache {self.cache.root} holds no verified index from "
                                   f"{self.src}; pull once online first")
            if self.key is not None:
                raise SignatureError(f"{self.src} has no {release.INDEX_NAME}: it is not a signed zoo mirror; "
                                     "refusing it (a trusted key is set for this source)")
            return None
        env = release.parse_index(raw, where)
        if self.key is None:
            return env
        signing.verify_index(env, self.key, where)
        signed = env["signed"]
        old = self._cached("index.json", release.MAX_INDEX_BYTES)
        seen = None
        if old is not None:
            try:
                prev = release.parse_index(old, "cached index")
                signing.verify_index(prev, self.key, "cached index")
                seen = prev["signed"]["version"]
            except (ManifestError, SignatureError):
                seen = None  # a cached index this key did not sign proves nothing
        if seen is not None and signed["version"] < seen:
            raise SignatureError(f"{where} is version {signed['version']}, older than version {seen} seen before "
                                 "from this source: a rollback; refusing it")
        if not self.offline:
            expires = release.parse_time(signed.get("expires"), f"{where}: expires")
            if expires <= release.now():
                raise SignatureError(f"{where} expired at {signed['expires']}: the mirror may be frozen on old "
                                     f"releases; refusing it (the publisher renews it; {OFFLINE_ENV}=1 serves what "
                                     "was verified before)")
        return env


def resolve(src: Source, cache, names, *, lock=None, key=None, progress: Progress = config.quiet,
            budget: Deadline | None = None, root_manifest=None) -> Resolution:
    """One :class:`Plan` per name (every name of the lock, or every latest version, when None).
    ``root_manifest``: how to read the source's plain manifest (for an unversioned source)."""
    budget = budget or Deadline()
    lk = lockfile.read_lock(lock) if lock else None
    if key is not None:
        signing.load_public_key(key)  # a bad key file is bad input, before any network call
    reader = _Reader(src, cache, key, progress, budget)
    index = reader.index()
    if names is None:
        if lk is not None:
            names = list(lk["models"])
        elif index is not None:
            names = sorted(index["signed"]["models"])
        else:
            names = [m["model"] for m in root_manifest()["models"]]
    refs = [release.parse_ref(n) for n in dict.fromkeys(names)]
    if not refs:
        raise InputError("no model names given")
    plans = []
    for name, spec in refs:
        pinned = None
        if lk is not None:
            pinned = lk["models"].get(name)
            if pinned is None:
                raise InputError(f"{name} is not in the lockfile {lock} (it holds: {', '.join(lk['models'])})")
            if spec is not None and spec not in (pinned["version"], pinned["digest"]):
                raise InputError(f"{name}@{spec} differs from the lockfile's {name}@{pinned['version']}")
            spec = pinned["digest"]
        if index is None:
            plans.append(_plain(src, name, spec, root_manifest()))
        else:
            plans.append(_versioned(reader, index, name, spec))
        if pinned is not None:
            lockfile.check_entry(plans[-1].entry, pinned, src)
    res = Resolution(plans, key)
    if key is not None or src.remote:
        res._keep = dict(reader.keep)
    return res


def _plain(src: Source, name: str, spec, manifest: dict) -> Plan:
    from .pull import find_entry

    entry = find_entry(manifest, name, src)
    if isinstance(spec, int):
        raise UnknownModelError(f"{src} is not a versioned mirror (no {release.INDEX_NAME}); {name}@{spec} cannot "
                                "be resolved there")
    if spec is not None and release.version_digest(entry["files"]) != spec:
        raise IntegrityError(f"{src} holds {name} {release.version_digest(entry['files'])[:19]}..., not {spec[:19]}...")
    header = {k: v for k, v in manifest.items() if k != "models"}
    return Plan(dict(header, models=[entry]), entry, by_blob=False)


def _versioned(reader: _Reader, index: dict, name: str, spec) -> Plan:
    src = reader.src
    rec = release.find_version(index, name, spec, str(src))
    v = rec["version"]
    where = src._where(rec["manifest"])
    raw = reader.get(rec["manifest"], f"{name}@{v}.json", config.MAX_MANIFEST_BYTES)
    if raw is None:
        raise (OfflineError if reader.offline else SourceError)(f"{where}: missing (listed in {release.INDEX_NAME})")
    if hashlib.sha256(raw).hexdigest() != rec["manifest_sha256"]:
        raise IntegrityError(f"{where} differs from its sha256 in {release.INDEX_NAME}; refusing it")
    vm = parse_manifest(raw, where)
    entry = vm["models"][0] if len(vm["models"]) == 1 else None
    rel = (entry or {}).get("release") or {}
    if entry is None or entry["model"] != name or rel.get("version") != v or rel.get("digest") != rec["digest"] \
            or release.version_digest(entry["files"]) != rec["digest"]:
        raise IntegrityError(f"{where} is not {name} version {v} ({rec['digest'][:19]}...); refusing it")
    if reader.key is not None:
        if rec.get("signature") is None:
            raise SignatureError(f"{name} version {v} at {src} is not signed; refusing it (a trusted key is set)")
        sig_where = src._where(rec["signature"])
        bundle = reader.get(rec["signature"], f"{name}@{v}.sig", signing.MAX_SIGNATURE_BYTES)
        if bundle is None:
            raise SignatureError(f"{sig_where}: missing; refusing {name} version {v}")
        if hashlib.sha256(bundle).hexdigest() != rec["signature_sha256"]:
            raise SignatureError(f"{sig_where} differs from its sha256 in the signed {release.INDEX_NAME} "
                                 "(swapped or damaged); refusing it")
        signing.verify_version(entry, bundle, reader.key, sig_where)
    return Plan(vm, entry, by_blob=True)


def blob_record(rec: dict) -> dict:
    """The record to fetch ``rec`` by content from a versioned mirror."""
    return dict(rec, path=release.blob_path(rec["sha256"]))


def fetched(rec: dict, by_blob: bool) -> dict:
    """What to fetch for ``rec``: its content address on a versioned mirror, else its path."""
    return blob_record(rec) if by_blob else rec


def summary(index: dict) -> dict[str, list[dict]]:
    return {n: [{"version": r["version"], "digest": r["digest"], "signed": r.get("signature") is not None}
                for r in vs] for n, vs in index["signed"]["models"].items()}


def versions_of(src: Source, cache, key=None, progress: Progress = config.quiet) -> dict | None:
    """name -> versions (number, digest, signed) of a versioned source, or None for a plain one."""
    index = _Reader(src, cache, key, progress, Deadline()).index()
    return None if index is None else summary(index)





def list_versions(source=None, *, cache_dir=None, trust=None, progress: Progress = config.quiet) -> dict | None:
    """``zoo models``: name -> versions of a versioned source (None for a plain one)."""
    from .cache import Cache
    from .source import resolve_source
    from .trust import trusted_key

    src = resolve_source(source)
    with Cache(cache_dir) as cache:
        return versions_of(src, cache, trusted_key(src, trust), progress)


def lock(names, source=None, out="zoo.lock", *, cache_dir=None, trust=None, progress: Progress = config.quiet) -> dict:
    """Resolve ``names`` (``NAME``, ``NAME@V``, ``NAME@sha256:...``; every model when None) at
    ``source`` (checked with the trusted key, if any) and write the lockfile ``out``."""
    from .cache import Cache
    from .pull import _manifest
    from .source import resolve_source
    from .trust import trusted_key

    src = resolve_source(source)
    budget = Deadline()
    with Cache(cache_dir) as cache:
        res = resolve(src, cache, names, key=trusted_key(src, trust), progress=progress, budget=budget,
                      root_manifest=lambda: _manifest(src, cache, progress, budget))
    return lockfile.write_lock(out, src.shown, [p.entry for p in res.plans])
__all__ = ["Plan", "Resolution", "blob_record", "list_versions", "lock", "read_bytes", "resolve", "versions_of", "wanted"]
