"""Step 3 of a pull: the plan. From a :class:`~zoo.hub.metadata.Catalogue` and what was asked (a
name, ``NAME@V``, ``NAME@sha256:...``, a lockfile), which version of which model, and which of its
files; each version's manifest fetched and checked against its TUF target (and, with a trust
anchor, its OpenSSF model signature against the trusted targets keys) before anything is planned.

Plain, pinned, locked and trusted pulls differ only in their inputs here: the catalogue says what
is verified, the refs and the lockfile say what is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..spec import FILE_PRECISIONS as PRECISIONS
from . import config, lockfile, release
from .config import IntegrityError, OfflineError, Progress, UnknownModelError
from .metadata import Catalogue, Version
from .tufclient import verify_signature
from .signing import MAX_SIGNATURE_BYTES, SignatureError
from .entries import parse_manifest


@dataclass
class ModelPlan:
    manifest: dict  # the manifest's header and this one entry
    entry: dict
    by_blob: bool  # fetch files by content (blobs/sha256/...): a versioned mirror
    version: int | None
    digest: str
    trust: str  # "verified" (TUF + model signature, against a trust anchor) | "unverified"
    ver: Version | None = None  # the catalogue's version (None: a plain source)


def offered(manifest: dict) -> str:
    return ", ".join(m["model"] for m in manifest["models"]) or "no models"


def find_entry(manifest: dict, name: str, src) -> dict:
    for m in manifest["models"]:
        if m["model"] == name:
            return m
    raise UnknownModelError(f"model {name!r} is not offered by {src}; it offers: {offered(manifest)}")


def model_record(entry: dict, precision: str, src) -> dict:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cands = [f for f in entry["files"] if f["role"] == "model" and f["precision"] == precision]
    cands.sort(key=lambda f: (f["path"] != entry["model_path"], not f["path"].endswith(".onnx")))
    if not cands:
        have = sorted({f["precision"] for f in entry["files"] if f["role"] == "model"})
        raise UnknownModelError(f"{entry['model']} has no {precision} model at {src}; it has: {', '.join(have)}")
    return cands[0]


def fetched(rec: dict, by_blob: bool) -> dict:
    """What to fetch for ``rec``: its content address on a versioned mirror, else its path."""
    return dict(rec, path=release.blob_path(rec["sha256"])) if by_blob else rec


def make(cat: Catalogue, names, *, lock=None, cache=None, progress: Progress = config.quiet) -> list[ModelPlan]:
    """One plan per name (every name of the lock, or every model the catalogue offers, when None)."""
    lk = lockfile.read_lock(lock) if lock else None
    if names is None:
        names = list(lk["models"]) if lk is not None else cat.names()
        if not names:
            raise UnknownModelError(f"{cat.src} offers no models")
    refs = [release.parse_ref(n) for n in dict.fromkeys(names)]
    if not refs:
        raise InputError("no model names given (pass None for every model the source offers)")
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
        p = _plain(cat, name, spec) if cat.kind == "plain" else _versioned(cat, name, spec, cache)
        if pinned is not None:
            lockfile.check_entry(p.entry, pinned, cat.src)
        plans.append(p)
    return plans


def _plain(cat: Catalogue, name: str, spec) -> ModelPlan:
    entry = find_entry(cat.manifest, name, cat.src)
    digest = release.version_digest(entry["files"])
    version = (entry.get("release") or {}).get("version")
    if isinstance(spec, int):
        if not getattr(cat.src, "versions_by_tag", False):  # an OCI registry read tag V for NAME@V
            raise UnknownModelError(f"{cat.src} is not a versioned mirror (no TUF metadata); {name}@{spec} cannot be "
                                    "resolved there")
        version = spec
    elif spec is not None and digest != spec:
        raise IntegrityError(f"{cat.src} holds {name} {digest[:19]}..., not {spec[:19]}...")
    header = {k: v for k, v in cat.manifest.items() if k != "models"}
    return ModelPlan(dict(header, models=[entry]), entry, False, version, digest, "unverified")


def _target(cat: Catalogue, pair, limit: int, cache) -> bytes:
    """A version's target: from the cache's verified copies when there (offline too), else the source;
    checked against its TUF length and sha256 either way (kept by the caller once the whole version
    verified)."""
    sha = pair[1].hashes["sha256"]
    data = _cached(cache, sha, limit)
    if data is not None:
        try:
            pair[1].verify_length_and_hashes(data)
            return data
        except Exception:  # noqa: BLE001 - a damaged copy is fetched again
            pass
    try:
        data = cat.target(pair, limit)
    except OfflineError:
        raise OfflineError(f"{config.OFFLINE_ENV}=1 and the cache holds no verified copy of {pair[0]} from "
                           f"{cat.src}; pull it once online first") from None
    return data


def _cached(cache, sha: str, limit: int) -> bytes | None:
    if cache is None:
        return None
    try:
        d = cache.sub(f"metadata/{sha[:2]}")
        if d is None:
            return None
        with d:
            return d.read_bytes(sha, limit)
    except (OSError, IntegrityError, Exception):  # noqa: BLE001 - no copy, a planted link: fetch it
        return None


def _keep(cache, sha: str, data: bytes) -> None:
    if cache is None:
        return
    try:
        with cache.sub(f"metadata/{sha[:2]}", create=True) as d:
            if not d.matches(sha, {"bytes": len(data), "sha256": sha}):
                d.write_atomic(sha, data, tag="meta")
    except OSError:
        pass  # a read-only cache: pulls still work, offline ones will not find it


def _versioned(cat: Catalogue, name: str, spec, cache) -> ModelPlan:
    v: Version = cat.find(name, spec)
    where = cat.src._where(v.manifest[0])
    raw = _target(cat, v.manifest, config.MAX_MANIFEST_BYTES, cache)
    vm = parse_manifest(raw, where)
    entry = vm["models"][0] if len(vm["models"]) == 1 else None
    rel = (entry or {}).get("release") or {}
    if entry is None or entry["model"] != name or rel.get("version") != v.version or rel.get("digest") != v.digest \
            or release.version_digest(entry["files"]) != v.digest:
        raise IntegrityError(f"{where} is not {name} version {v.version} ({v.digest[:19]}...); refusing it")
    if cat.trusted:
        if v.signature is None:
            raise SignatureError(f"{name} version {v.version} at {cat.src} has no model signature; refusing it "
                                 "(a trust anchor is set)")
        bundle = _target(cat, v.signature, MAX_SIGNATURE_BYTES, cache)
        verify_signature(cat, v, entry, bundle)
        _keep(cache, v.signature[1].hashes["sha256"], bundle)
    _keep(cache, v.manifest[1].hashes["sha256"], raw)  # what ZOO_OFFLINE=1 plans from
    return ModelPlan(vm, entry, True, v.version, v.digest, "verified" if cat.trusted else "unverified", v)


def records(cat: Catalogue, p: ModelPlan, cache=None) -> list[dict] | None:
    """The version's verification records (in-toto Statements), each checked as a TUF target and as a
    DSSE envelope signed by the trusted targets keys; None without an anchor (then the manifest's own,
    unsigned records are all there is)."""
    from .attest import AttestationError, verify_envelope

    if not cat.trusted or p.ver is None:
        return None
    out = []
    for path, tf in sorted(p.ver.extra.items()):
        z = (tf.custom or {}).get("zoo", {})
        if z.get("kind") != "record":
            continue
        env = _target(cat, (path, tf), tf.length, cache)
        try:
            out.append(verify_envelope(env, cat.targets_keys, cat.targets_threshold, str(z.get("file"))))
        except AttestationError as e:
            raise SignatureError(f"{cat.src._where(path)}: {e}") from None
    return out


def choose(p: ModelPlan, recs, precision: str, runtime: str | None, require: str | None, src) -> dict:
    """The file of plan ``p`` to pull: the ``precision`` model file, or with ``runtime``
    (``NAME[@VERSION]``) the fastest file verified on it; with ``require`` (``NAME[@VERSION]``) it must
    carry a passing record for that runtime. Bad input: a runtime the version has no record for."""
    from .attest import NotVerifiedError, pick_file, require_verified

    try:
        if runtime is not None:
            name, _, version = runtime.partition("@")
            rec = pick_file(p.entry, recs, name, version or None, precision=precision)
        else:
            rec = model_record(p.entry, precision, src)
        if require is not None:
            name, _, version = require.partition("@")
            require_verified(p.entry, recs, name, [rec], version or None)
    except NotVerifiedError as e:
        raise UnknownModelError(f"{e} ({'signed records' if recs is not None else 'the manifest, unsigned'})") from None
    return rec


__all__ = ["ModelPlan", "choose", "fetched", "find_entry", "make", "model_record", "offered", "records"]
