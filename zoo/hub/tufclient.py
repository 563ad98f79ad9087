"""The trusted half of step 2 of a pull: python-tuf's ``ngclient.Updater`` over the zoo's transport.

With a trust anchor (:mod:`zoo.hub.trust`), the metadata is refreshed by python-tuf through
:class:`ZooFetcher` (every request through the source's bounded, deadline-bound reader), kept in the
anchor's state folder, and turned into a verified :class:`~zoo.hub.metadata.Catalogue`; offline, the
verified state is read back. :func:`verify_signature` checks a version's OpenSSF model signature
against the targets keys the trusted root names.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path

from ..errors import InputError, ManifestError, ZooError, cut
from . import config, repo
from .config import OFFLINE_ENV, Deadline, IntegrityError, OfflineError, Progress, SourceError, offline
from .metadata import Catalogue, Version, _catalogue, _reader, read_or_none
from .signing import SignatureError


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


def trusted_catalogue(src, anchor, progress, budget) -> Catalogue:
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


__all__ = ["ZooFetcher", "make_fetcher", "trusted_catalogue", "verify_signature"]
