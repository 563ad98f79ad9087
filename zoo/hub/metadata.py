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
fetch a version's manifest and signature verified against their TUF target hashes.
"""

from __future__ import annotations

import hashlib
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, ManifestError, ZooError, cut
from . import config, repo
from .config import OFFLINE_ENV, Deadline, IntegrityError, OfflineError, Progress, SourceError, UnknownModelError, offline
from .signing import SignatureError


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


# --------------------------------------------------------------------------------------------------
# Transport for python-tuf


def make_fetcher(src, progress: Progress, budget: Deadline):
    """A :class:`ZooFetcher` (python-tuf is imported only when a TUF mirror is read)."""
    from tuf.ngclient.fetcher import FetcherInterface

    global _Fetcher
    if _Fetcher is None:
        _Fetcher = type("ZooFetcher", (ZooFetcher, FetcherInterface), {})
    return _Fetcher(src, progress, budget)


_Fetcher = None


class ZooFetcher:
    """python-tuf's ``FetcherInterface`` over a zoo :class:`~zoo.hub.source.Source`: every metadata
    request goes through the source's bounded, deadline-bound reader; the timestamp and snapshot
    are refused when they expire further ahead than any zoo publisher may ask (a freeze that a
    stolen online key could make last for years)."""

    def __init__(self, src, progress: Progress, budget: Deadline):
        self.src, self.progress, self.budget = src, progress, budget

    def rel(self, url: str) -> str:
        base = self.src.url
        if not url.startswith(base):
            raise SourceError(f"python-tuf asked for {cut(url, 120)}, outside {self.src}")
        return urllib.parse.unquote(url[len(base):])

    def _fetch(self, url: str):
        from tuf.api.exceptions import DownloadHTTPError

        rel = self.rel(url)
        try:
            data = read_or_none(self.src, rel, repo.MAX_METADATA_BYTES, self.progress, self.budget)
        except ManifestError as e:  # larger than any metadata file
            raise DownloadHTTPError(str(e), 413) from None
        if data is None:
            raise DownloadHTTPError(f"{rel}: not found", 404)
        base = rel.rsplit("/", 1)[-1]
        if base == "timestamp.json" or base.endswith(".snapshot.json"):
            _check_horizon(data, self.src._where(rel))
        return iter([data])


def _check_horizon(data: bytes, where: str) -> None:
    import datetime as dt

    try:
        md = repo.parse(data, "timestamp" if where.endswith("timestamp.json") else "snapshot", where)
    except ManifestError:
        return  # python-tuf refuses it with its own message
    limit = repo.now() + dt.timedelta(days=repo.ONLINE_MAX_DAYS + 1)
    if md.signed.expires > limit:
        raise SignatureError(f"{where} expires at {md.signed.expires:%Y-%m-%d}, more than "
                             f"{repo.ONLINE_MAX_DAYS:g} days ahead: a freeze could last that long; refusing it")


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
        return _trusted(src, anchor, progress, budget)
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


# --------------------------------------------------------------------------------------------------
# With a trust anchor: python-tuf's Updater


def _bootstrap(src, anchor, progress, budget) -> bytes:
    """The root metadata to start from: the anchor itself, or the mirror's 1.root.json when the
    anchor is one of its root keys and that key signed it."""
    if anchor.kind == "root":
        return anchor.data
    from cryptography.hazmat.primitives import serialization
    from tuf.api.exceptions import UnsignedMetadataError

    from .keys import sslib_key

    rel = repo.meta_name("root", 1)
    raw = read_or_none(src, rel, repo.MAX_METADATA_BYTES, progress, budget)
    if raw is None:
        _not_tuf(src, progress, budget)
    md = repo.parse(raw, "root", src._where(rel))
    key = sslib_key(serialization.load_pem_public_key(anchor.data))
    sig = md.signatures.get(key.keyid)
    if key.keyid not in md.signed.roles["root"].keyids or sig is None:
        raise SignatureError(f"{src._where(rel)} is not signed by the trusted key {key.keyid[:16]}... "
                             f"({anchor.origin}); refusing this mirror")
    try:
        key.verify_signature(sig, md.signed_bytes)
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
    except (UnsignedMetadataError, Exception) as e:  # noqa: BLE001 - securesystemslib raises several types
        raise SignatureError(f"{src._where(rel)}: its signature by the trusted key does not verify "
                             f"({cut(e, 80)}); refusing this mirror") from None
    return raw


def _not_tuf(src, progress, budget):
    from .release import INDEX_NAME, MAX_INDEX_BYTES

    legacy = read_or_none(src, INDEX_NAME, MAX_INDEX_BYTES, progress, budget) is not None
    raise SignatureError(f"{src} has no TUF metadata ({repo.METADATA}/): "
                         + (f"it is a pre-TUF mirror ({INDEX_NAME}), which cannot be trusted; its publisher upgrades "
                            "it by publishing once with keys" if legacy else "it is not a signed zoo mirror")
                         + "; refusing it (a trust anchor is set for this source)")


def _trusted(src, anchor, progress, budget) -> Catalogue:
    from .trust import prepare_state_dir

    if src.remote and offline():
        return _trusted_offline(src, anchor)
    root_raw = _bootstrap(src, anchor, progress, budget)
    state = prepare_state_dir(anchor)
    updater = _updater(src, state, root_raw, progress, budget)
    ts = updater._trusted_set
    return _catalogue(src, "tuf", True, ts.targets, _reader(src, progress, budget), ts.root, ts.timestamp)


def _updater(src, state: Path, root_raw: bytes, progress, budget):
    from tuf.api import exceptions as tx
    from tuf.ngclient import Updater, UpdaterConfig

    fetcher = make_fetcher(src, progress, budget)
    cfg = UpdaterConfig(root_max_length=repo.MAX_METADATA_BYTES, timestamp_max_length=1 << 20,
                        snapshot_max_length=repo.MAX_METADATA_BYTES, targets_max_length=repo.MAX_METADATA_BYTES)
    try:
        updater = Updater(str(state), src.url + repo.METADATA + "/", target_dir=None, target_base_url=src.url,
                          fetcher=fetcher, config=cfg, bootstrap=root_raw)
        updater.refresh()
    except tx.DownloadError as e:
        cause = e.__cause__
        if isinstance(cause, (ZooError, InputError)):  # the source's own line (an OCI namespace: name the models)
            raise cause from None
        if isinstance(e, tx.DownloadHTTPError) and e.status_code == 404:
            _not_tuf(src, progress, budget)
        raise SourceError(f"{src}: cannot fetch the mirror's metadata ({cut(e, 120)})") from None
    except tx.ExpiredMetadataError as e:
        raise SignatureError(f"{src}: {cut(e, 120)}: the mirror may be frozen on old releases; refusing it (the "
                             f"publisher renews it with `zoo publish --renew-index`; {OFFLINE_ENV}=1 serves what was "
                             "verified before)") from None
    except tx.BadVersionNumberError as e:
        raise SignatureError(f"{src}: {cut(e, 120)}: older metadata than this client verified before (a rollback); "
                             "refusing it") from None
    except tx.UnsignedMetadataError as e:
        raise SignatureError(f"{src}: {cut(e, 140)}: not signed by the trusted keys; refusing it") from None
    except tx.RepositoryError as e:
        raise SignatureError(f"{src}: the mirror's metadata does not verify ({type(e).__name__}: {cut(e, 120)}); "
                             "refusing it") from None
    except OSError as e:
        raise IntegrityError(f"cannot keep the verified metadata in {state}: {config.first_line(e)}") from None
    return updater


def _trusted_offline(src, anchor) -> Catalogue:
    """``ZOO_OFFLINE=1``: what was verified before, from the anchor's state folder (no expiry check:
    nothing new can arrive)."""
    from tuf.api.exceptions import RepositoryError
    from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
    from tuf.ngclient.config import EnvelopeType

    state = anchor.state_dir

    def local(name):
        try:
            from ..fsutil import read_regular

            return read_regular(state / name, repo.MAX_METADATA_BYTES)
        except (OSError, ValueError):
            return None

    roots = sorted((int(p.name.split(".")[0]), p.name) for p in (state / "root_history").glob("*.root.json")
                   if p.name.split(".")[0].isdigit()) if (state / "root_history").is_dir() else []
    tsraw, snraw, tgraw = local("timestamp.json"), local("snapshot.json"), local("targets.json")
    if not roots or None in (tsraw, snraw, tgraw):
        raise OfflineError(f"{OFFLINE_ENV}=1 and nothing from {src} was verified here before; pull once online first")
    try:
        tms = TrustedMetadataSet(local("root_history/1.root.json") or anchor.data, EnvelopeType.METADATA)
        for v, name in roots[1:]:
            tms.update_root(local(f"root_history/{name}"))
        md_root = tms.root
        targets = repo.parse(tgraw, "targets", str(state / "targets.json"))
        md_root.verify_delegate("targets", targets.signed_bytes, targets.signatures)
        ts = repo.parse(tsraw, "timestamp", str(state / "timestamp.json"))
        md_root.verify_delegate("timestamp", ts.signed_bytes, ts.signatures)
    except (RepositoryError, ManifestError, TypeError) as e:
        raise SignatureError(f"the verified metadata kept for {src} in {state} no longer verifies ({cut(e, 80)}); "
                             "pull once online") from None

    def read(rel, limit):
        raise OfflineError(f"{OFFLINE_ENV}=1 and {rel} is not in the cache")

    return _catalogue(src, "tuf", True, targets.signed, read, md_root, ts.signed)


def verify_signature(cat: Catalogue, version: Version, entry: dict, bundle: bytes) -> None:
    """The version's OpenSSF model_signing bundle must verify with one of the targets keys the
    trusted root names, and cover exactly the files ``entry`` lists."""
    from .keys import public_pem
    from .signing import verify_version

    where = cat.src._where(version.signature[0])
    errors = []
    with tempfile.TemporaryDirectory(prefix="zoo-keys-") as tmp:
        for i, key in enumerate(cat.targets_keys):
            p = Path(tmp) / f"{i}.pub"
            p.write_bytes(public_pem(key))
            try:
                verify_version(entry, bundle, p, where)
                return
            except SignatureError as e:
                errors.append(str(e))
    raise SignatureError(errors[-1] if errors else f"{where}: the trusted root names no targets key")


__all__ = ["Catalogue", "Version", "ZooFetcher", "make_fetcher", "open_catalogue", "read_or_none", "verify_signature"]
