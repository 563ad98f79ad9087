"""The publisher's side of a mirror's TUF metadata (python-tuf's ``tuf.api.metadata``).

A mirror's ``metadata/`` folder is a TUF repository with consistent snapshots::

    metadata/1.root.json, 2.root.json ...   every root version (rotations), never rewritten
    metadata/root.json                       a copy of the newest root (what a consumer is handed)
    metadata/N.targets.json                  the release: every model version's manifest and
                                             signature as targets (length, sha256, ``custom.zoo``)
    metadata/N.snapshot.json                 the targets version in force
    metadata/timestamp.json                  the snapshot version in force; short-lived (1 day)

Targets are served from the mirror's root (``releases/NAME/V/manifest.json`` and, for TUF clients
with consistent snapshots, ``releases/NAME/V/<sha256>.manifest.json``). Roles as TUF intends: root
and targets keys stay offline (they sign releases and rotations), one online key signs snapshot
and timestamp (renewals). An unsigned mirror has the same files, signed by nobody (a root with no
keys): versions for everyone, trust for no one, and every trusted client refuses it.

Everything here builds or checks metadata with python-tuf; the signatures are securesystemslib's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from ..errors import InputError, ManifestError, cut
from .config import IntegrityError

METADATA = "metadata"
SPEC_VERSION = "1.0.31"
MAX_METADATA_BYTES = 8 << 20
MAX_ROOTS = 256  # python-tuf's own limit on rotations a client follows
DAY = 86400.0
# Expiry, in days: defaults, and what a publisher may ask (a longer-lived timestamp is a longer
# freeze; clients refuse a timestamp or snapshot expiring further ahead than ONLINE_MAX_DAYS).
ONLINE_DAYS, TARGETS_DAYS, ROOT_DAYS = 1.0, 365.0, 365.0
ONLINE_MAX_DAYS, OFFLINE_MAX_DAYS = 31.0, 3660.0
ROLES = ("root", "targets", "snapshot", "timestamp")


class TrustStateError(IntegrityError):
    """The mirror's metadata does not verify with the publisher's keys: nothing is signed."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_days(value, option: str, maximum: float) -> float:
    """An expiry in days from the command line: a finite number in (0, maximum]; else bad input."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} {cut(repr(value), 40)}: not a number of days") from None
    if not (v == v and 0 < v <= maximum):  # NaN, inf, 0 and negatives fail here
        raise InputError(f"{option} {cut(repr(value), 40)}: give a number of days above 0 and at most {maximum:g}")
    return v


def expiry(days: float) -> dt.datetime:
    return now() + dt.timedelta(seconds=round(days * DAY))


def meta_name(role: str, version: int | None = None) -> str:
    return f"{METADATA}/{role}.json" if version is None else f"{METADATA}/{version}.{role}.json"


def hashed_name(path: str, sha: str) -> str:
    """The consistent-snapshot name TUF clients fetch a target by: ``DIR/<sha256>.NAME``."""
    head, sep, base = path.rpartition("/")
    return f"{head}{sep}{sha}.{base}"


def target_file(path: str, data: bytes, custom: dict):
    from tuf.api.metadata import TargetFile

    return TargetFile(len(data), {"sha256": hashlib.sha256(data).hexdigest()}, path, {"custom": {"zoo": custom}})


def to_bytes(md) -> bytes:
    from tuf.api.serialization.json import JSONSerializer

    return JSONSerializer(compact=False).serialize(md) + b"\n"


def parse(raw: bytes, role: str, where: str):
    """One metadata file of ``role``, parsed by python-tuf (shape only: signatures are checked by
    whoever reads it with a trust anchor)."""
    from tuf.api.metadata import Metadata

    if len(raw) > MAX_METADATA_BYTES:
        raise ManifestError(f"{where}: larger than {MAX_METADATA_BYTES:,} bytes; refusing it")
    try:
        md = Metadata.from_bytes(raw)
    except Exception as e:  # noqa: BLE001 - python-tuf raises DeserializationError over many causes
        raise ManifestError(f"{where}: not TUF {role} metadata ({cut(str(e).splitlines()[0] if str(e) else type(e).__name__, 100)})") from None
    if md.signed.type != role:
        raise ManifestError(f"{where}: {md.signed.type} metadata where {role} metadata belongs")
    return md


# --------------------------------------------------------------------------------------------------
# Keys the publisher holds


@dataclass
class Keyring:
    """The publisher's signers per role (securesystemslib ``CryptoSigner``s)."""

    root: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    online: object | None = None
    threshold: int | None = None  # for a new root (or a rotation): root's and targets' threshold

    @classmethod
    def from_files(cls, *, sign_key=None, root_keys=(), targets_keys=(), online_key=None, threshold=None) -> Keyring:
        from .keys import signer

        if threshold is not None and (not isinstance(threshold, int) or not 1 <= threshold <= 16):
            raise InputError(f"--threshold {threshold!r}: give a whole number from 1 to 16")
        ring = cls(threshold=threshold)
        seen: dict[str, object] = {}

        def load(path):
            s = signer(path)
            return seen.setdefault(s.public_key.keyid, s)

        ring.root = [load(p) for p in root_keys]
        ring.targets = [load(p) for p in targets_keys]
        ring.online = load(online_key) if online_key else None
        if sign_key is not None:  # one key in every role: the simple set-up
            s = load(sign_key)
            ring.root = ring.root or [s]
            ring.targets = ring.targets or [s]
            ring.online = ring.online or s
        for role in ("root", "targets"):
            keys = getattr(ring, role)
            if len({s.public_key.keyid for s in keys}) != len(keys):
                raise InputError(f"the same {role} key is given twice")
        return ring

    @property
    def any(self) -> bool:
        return bool(self.root or self.targets or self.online)

    @property
    def content_signer(self):
        """The key that signs model_signing bundles: the first targets key."""
        return self.targets[0] if self.targets else None


# --------------------------------------------------------------------------------------------------
# A mirror's metadata as it stands


@dataclass
class State:
    roots: list  # Metadata[Root], version 1 upwards
    targets: object | None = None
    snapshot: object | None = None
    timestamp: object | None = None

    @property
    def root(self):
        return self.roots[-1]

    @property
    def signed(self) -> bool:
        return bool(self.root.signed.keys)

    def versions(self) -> dict[str, dict[int, dict]]:
        """name -> version -> {"digest", "manifest": (path, TargetFile), "signature": (path, TargetFile) | None,
        "records": ...} from the targets metadata."""
        return versions_of_targets(self.targets.signed.targets if self.targets is not None else {})


def versions_of_targets(targets: dict) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for path, tf in targets.items():
        z = (tf.custom or {}).get("zoo") if isinstance(tf.custom, dict) else None
        if not isinstance(z, dict) or not isinstance(z.get("model"), str) or type(z.get("version")) is not int:
            continue
        v = out.setdefault(z["model"], {}).setdefault(z["version"], {"signature": None, "extra": {}})
        kind = z.get("kind")
        if kind == "manifest":
            v["manifest"] = (path, tf)
            v["digest"] = z.get("digest")
        elif kind == "signature":
            v["signature"] = (path, tf)
        elif isinstance(kind, str):
            v["extra"][path] = tf
    return {n: {k: v for k, v in vs.items() if "manifest" in v} for n, vs in out.items()}


def read_state(out) -> State | None:
    """The mirror's metadata (``out``: a no-follow :class:`zoo.hub.paths.Dir`), parsed; None when it
    has none. Nothing is verified here (see :func:`verify_state`)."""
    roots = []
    for v in range(1, MAX_ROOTS + 1):
        raw = _read(out, meta_name("root", v))
        if raw is None:
            break
        md = parse(raw, "root", str(out.path / meta_name("root", v)))
        if md.signed.version != v:
            raise TrustStateError(f"{out.path / meta_name('root', v)} holds root version {md.signed.version}")
        roots.append(md)
    if not roots:
        if _read(out, meta_name("timestamp")) is not None:
            raise TrustStateError(f"{out.path / METADATA} has a timestamp but no 1.root.json; not publishing into it")
        return None
    st = State(roots)
    raw = _read(out, meta_name("timestamp"))
    if raw is None:
        return st
    st.timestamp = parse(raw, "timestamp", str(out.path / meta_name("timestamp")))
    sv = st.timestamp.signed.snapshot_meta.version
    raw = _need(out, meta_name("snapshot", sv))
    st.snapshot = parse(raw, "snapshot", str(out.path / meta_name("snapshot", sv)))
    tmeta = st.snapshot.signed.meta.get("targets.json")
    if tmeta is None:
        raise TrustStateError(f"{out.path / meta_name('snapshot', sv)} names no targets.json")
    raw = _need(out, meta_name("targets", tmeta.version))
    st.targets = parse(raw, "targets", str(out.path / meta_name("targets", tmeta.version)))
    return st


def _read(out, rel: str) -> bytes | None:
    try:
        return out.read_bytes(rel, MAX_METADATA_BYTES)
    except FileNotFoundError:
        return None
    except IntegrityError:
        raise ManifestError(f"{out.path / rel}: larger than {MAX_METADATA_BYTES:,} bytes") from None


def _need(out, rel: str) -> bytes:
    raw = _read(out, rel)
    if raw is None:
        raise TrustStateError(f"{out.path / rel} is missing (the mirror's metadata names it)")
    return raw


def verify_state(st: State, ring: Keyring, where: str) -> None:
    """Check the mirror's signed metadata with python-tuf before anything is signed on top of it:
    the root chain (each version signed by its predecessor's threshold and its own), targets,
    snapshot and timestamp by the newest root's keys, the snapshot naming this targets version,
    the timestamp this snapshot; and the publisher's keys are the mirror's for the roles they sign.
    Expiry is not checked: renewing is why a publisher comes. Raises :class:`TrustStateError`."""
    from tuf.api.exceptions import UnsignedMetadataError

    def fail(msg):
        raise TrustStateError(f"{where}: {msg}; not signing anything on top of it")

    try:
        prev = None
        for md in st.roots:
            if prev is not None:
                prev.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            prev = md
    except UnsignedMetadataError as e:
        fail(f"root version {md.signed.version} does not verify ({cut(e, 100)})")
    root = st.root.signed
    for role, md in (("targets", st.targets), ("snapshot", st.snapshot), ("timestamp", st.timestamp)):
        if md is None:
            continue
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            fail(f"{role} version {md.signed.version} does not verify with the root's {role} keys ({cut(e, 100)})")
    if st.snapshot is not None and st.targets is not None:
        tm = st.snapshot.signed.meta["targets.json"]
        if tm.version != st.targets.signed.version:
            fail("the snapshot names another targets version")
    if st.timestamp is not None and st.snapshot is not None:
        sm = st.timestamp.signed.snapshot_meta
        if sm.version != st.snapshot.signed.version:
            fail("the timestamp names another snapshot version")
    authorise(root, ring, where)


def authorise(root, ring: Keyring, where: str) -> None:
    """The publisher's keys must be the ones the mirror's root names for the roles they sign."""
    for role, signers in (("root", ring.root), ("targets", ring.targets),
                          ("timestamp", [ring.online] if ring.online else [])):
        allowed = set(root.roles[role].keyids)
        for s in signers:
            if s.public_key.keyid not in allowed:
                raise TrustStateError(f"{where}: the {role} key {getattr(s, 'zoo_path', '')} is not one of this "
                                      f"mirror's {role} keys; not signing with it")


# --------------------------------------------------------------------------------------------------
# Making metadata


def new_root(ring: Keyring, version: int = 1, days: float = ROOT_DAYS, consistent: bool = True):
    """Root metadata naming ``ring``'s keys (none: an unsigned mirror's root), not yet signed."""
    from tuf.api.metadata import Metadata, Role, Root

    threshold = ring.threshold or 1
    root = Root(version=version, spec_version=SPEC_VERSION, expires=expiry(days), consistent_snapshot=consistent,
                roles={r: Role([], 1) for r in ROLES})
    for role, signers in (("root", ring.root), ("targets", ring.targets), ("snapshot", [ring.online]),
                          ("timestamp", [ring.online])):
        for s in signers:
            if s is not None:
                root.add_key(s.public_key, role)
    for role in ("root", "targets"):
        n = len(root.roles[role].keyids)
        if n and threshold > n:
            raise InputError(f"--threshold {threshold} but only {n} {role} key(s) given")
        root.roles[role].threshold = min(threshold, n) if n else 1
    return Metadata(root)


def sign(md, signers, role: str, threshold: int) -> None:
    """Sign ``md`` with every signer; at least ``threshold`` of them (the role's) are needed."""
    if len(signers) < threshold:
        raise InputError(f"{role} metadata needs {threshold} signature(s); {len(signers)} {role} key(s) given")
    md.signatures.clear()
    for s in signers:
        md.sign(s, append=True)


def check_custom(obj) -> dict:
    """JSON-able custom data, checked to round-trip (no NaN, only strings as keys)."""
    json.dumps(obj, allow_nan=False, sort_keys=True)
    return obj


__all__ = ["DAY", "Keyring", "METADATA", "ONLINE_DAYS", "ONLINE_MAX_DAYS", "OFFLINE_MAX_DAYS", "ROOT_DAYS",
           "State", "TARGETS_DAYS", "TrustStateError", "authorise", "check_days", "expiry", "hashed_name", "meta_name",
           "new_root", "now", "parse", "read_state", "sign", "target_file", "to_bytes", "verify_state",
           "versions_of_targets"]
