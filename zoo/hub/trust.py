"""What a source must be signed with: a trust anchor per source identity, and the policy.

An anchor is the publisher's TUF root metadata (``root.json``, what TUF hands a client) or one of its
root keys (a PEM public key: the mirror's ``metadata/1.root.json`` is then accepted only when that
key signed it). It comes from ``--trust FILE``, else ``$ZOO_TRUST``, else the trust store, which
``zoo trust add SOURCE FILE`` writes. Trust is bound to the source's normalised identity
(:attr:`zoo.hub.source.Source.identity`: scheme and host lowercased, IDNA, default port dropped,
dot segments and ``//`` resolved, no credentials, a folder's real path), never to its spelling.

The store lives in ``$ZOO_CONFIG`` (else ``$XDG_CONFIG_HOME/zoo``, else ``~/.config/zoo``)::

    trust.json                    {"store_version": 2, "require": false, "sources": {IDENTITY: {...}}}
    trust/<id>/anchor.json|.pem   a copy of the anchor (moving the original changes nothing)
    trust/<id>/metadata/          python-tuf's trusted metadata for that source and anchor: the
                                  newest verified root, timestamp, snapshot and targets (what
                                  refuses rollback and freeze); written by trusted pulls only

A damaged store is a failed job (exit 1), never "no trust". ``zoo trust require`` (or
``ZOO_REQUIRE_SIGNED=1``) makes every pull need an anchor.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, cut
from ..fsutil import MissingInputError, atomic_write_bytes, read_input
from .config import HubError, first_line

TRUST_ENV = "ZOO_TRUST"
REQUIRE_ENV = "ZOO_REQUIRE_SIGNED"
CONFIG_ENV = "ZOO_CONFIG"
TRUST_FILE = "trust.json"
STORE_VERSION = 2
MAX_STORE_BYTES = 1 << 20
MAX_ANCHOR_BYTES = 512_000  # python-tuf's own limit on a root metadata file


class TrustStoreError(HubError):
    """The trust store is damaged: exit 1 (a damaged store must never mean "no trust")."""


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "zoo"
    return Path.home() / ".config" / "zoo"


def _empty() -> dict:
    return {"store_version": STORE_VERSION, "require": False, "sources": {}}


def _load() -> dict:
    p = config_dir() / TRUST_FILE
    try:
        raw = read_input(p, MAX_STORE_BYTES, "trust store", nofollow=True)
    except MissingInputError:
        return _empty()
    except InputError as e:  # a FIFO, a device, a link, too large: the zoo's own file is damaged
        raise TrustStoreError(f"unreadable trust store: {e}; fix or remove it") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise TrustStoreError(f"{p}: damaged trust store ({cut(first_line(e), 80)}); fix or remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise TrustStoreError(f"{p}: not a zoo trust store; fix or remove it")
    if data.get("store_version") != STORE_VERSION:  # version 1 named key files per spelling: not trusted as is
        raise TrustStoreError(f"{p}: a trust store of an older zoo (store_version {data.get('store_version', 1)!r}); "
                              "remove it and run `zoo trust add` again with the publisher's root.json or key")
    if not isinstance(data.get("require"), bool):
        raise TrustStoreError(f"{p}: damaged trust store ('require' is not true or false); fix or remove it")
    for ident, rec in data["sources"].items():
        ok = (isinstance(rec, dict) and rec.get("kind") in ("root", "key") and isinstance(rec.get("anchor"), str)
              and rec["anchor"] == f"trust/{_slot(ident)}/anchor.{'json' if rec['kind'] == 'root' else 'pem'}")
        if not ok:
            raise TrustStoreError(f"{p}: damaged trust store (the entry for {cut(ident, 80)}); remove it "
                                  "(`zoo trust remove`) and add it again")
    return data


def _save(data: dict) -> None:
    atomic_write_bytes(config_dir() / TRUST_FILE, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _slot(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------------
# Anchors


@dataclass(frozen=True)
class Anchor:
    """A trust anchor for one source: root metadata bytes, or a root key's PEM; and where python-tuf
    keeps the trusted metadata for it."""

    identity: str
    kind: str  # "root" | "key"
    data: bytes
    state_dir: Path
    origin: str  # what the user gave: a path, or "trust store"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def root_keyids(self) -> set[str]:
        return set(describe(self.kind, self.data, self.origin)["keyids"])


def read_anchor(path, what: str = "--trust") -> tuple[str, bytes]:
    """(kind, bytes) of an anchor file: TUF root metadata (JSON) or a PEM public key; bad input else."""
    p = Path(os.fspath(path)).expanduser()
    data = read_input(p, MAX_ANCHOR_BYTES, what)  # bounded, never blocks on a FIFO or a device
    kind = "key" if data.lstrip().startswith(b"-----BEGIN") else "root"
    describe(kind, data, f"{what} {p}")  # checks it
    return kind, data


def describe(kind: str, data: bytes, where: str) -> dict:
    """Key ids (TUF's) the anchor names as root keys; raises bad input for a malformed anchor."""
    if kind == "key":
        from cryptography.hazmat.primitives import serialization

        from .keys import CURVES, sslib_key

        if b"PRIVATE KEY" in data:
            raise InputError(f"{where} is a private key; trust needs only the public key (.pub)")
        try:
            pub = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise InputError(f"{where}: not a PEM public key ({cut(first_line(e), 100)})") from None
        if getattr(getattr(pub, "curve", None), "name", None) not in CURVES:
            raise InputError(f"{where}: not an elliptic-curve key on {', '.join(CURVES)}")
        return {"keyids": [sslib_key(pub).keyid]}
    from . import repo
    from ..errors import ManifestError

    try:
        md = repo.parse(data, "root", where)
    except ManifestError as e:
        raise InputError(str(e)) from None
    return {"keyids": list(md.signed.roles["root"].keyids), "version": md.signed.version}


def _state_dir(identity: str, fingerprint: str) -> Path:
    return config_dir() / "trust" / _slot(identity) / "metadata" / fingerprint[:16]


def anchor_for(src, explicit=None, progress=None) -> Anchor | None:
    """The anchor ``src`` must verify against, or None (no trust set up, and none required)."""
    ident = src.identity
    given = explicit if explicit not in (None, "") else os.environ.get(TRUST_ENV) or None
    if given is not None:
        kind, data = read_anchor(given, "--trust" if explicit not in (None, "") else f"${TRUST_ENV}")
        fp = hashlib.sha256(data).hexdigest()
        return Anchor(ident, kind, data, _state_dir(ident, fp), str(given))
    store = _load()
    rec = store["sources"].get(ident)
    if rec is None:
        if store["require"] or _env_flag(REQUIRE_ENV):
            from .signing import SignatureError

            raise SignatureError(f"no trusted root or key for {src} and signatures are required "
                                 f"({'`zoo trust require`' if store['require'] else '$' + REQUIRE_ENV}); "
                                 "add one with `zoo trust add SOURCE ROOT.json|KEY.pub`, or give --trust")
        if store["sources"] and progress is not None:
            progress(f"note: {src} has no trust entry (trust is set for {len(store['sources'])} other source(s)); "
                     "pulling it without a signature check")
        return None
    path = config_dir() / rec["anchor"]
    try:
        data = read_input(path, MAX_ANCHOR_BYTES, "trusted anchor", nofollow=True)
    except InputError as e:
        raise TrustStoreError(f"{e} (the anchor for {src}); remove and add it again") from None
    try:
        describe(rec["kind"], data, str(path))
    except InputError as e:
        raise TrustStoreError(f"{e} (the trust store's anchor for {src}); remove and add it again") from None
    fp = hashlib.sha256(data).hexdigest()
    return Anchor(ident, rec["kind"], data, _state_dir(ident, fp), "trust store")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def prepare_state_dir(anchor: Anchor) -> Path:
    """python-tuf's metadata folder for ``anchor``, made if missing; refused if any part of it below
    the config folder is a link or not a folder (python-tuf writes there with plain paths)."""
    base = config_dir()
    base.mkdir(parents=True, exist_ok=True)
    rel = anchor.state_dir.relative_to(base)
    cur = base
    for part in (*rel.parts, "root_history"):
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o700)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise TrustStoreError(f"{cur} is not a folder (a link or a file was planted there); remove it")
    return anchor.state_dir


# --------------------------------------------------------------------------------------------------
# The commands


def trust_add(source, anchor_path) -> dict:
    """Trust the root metadata or root key in ``anchor_path`` for ``source`` (replacing an earlier
    anchor, and the metadata verified with it)."""
    import shutil

    from .source import resolve_source

    src = resolve_source(source)
    kind, data = read_anchor(anchor_path, "trust anchor")
    info = describe(kind, data, str(anchor_path))
    store = _load()
    ident = src.identity
    slot = config_dir() / "trust" / _slot(ident)
    if slot.is_dir() and not slot.is_symlink():
        shutil.rmtree(slot)  # the old anchor's verified metadata goes with it
    slot.mkdir(parents=True, exist_ok=True)
    anchor = f"trust/{_slot(ident)}/anchor.{'json' if kind == 'root' else 'pem'}"
    atomic_write_bytes(config_dir() / anchor, data)
    store["sources"][ident] = {"kind": kind, "anchor": anchor, "root_keyids": info["keyids"]}
    _save(store)
    return {"source": ident, "kind": kind, "root_keyids": info["keyids"], "anchor": str(config_dir() / anchor)}


def trust_remove(source) -> dict:
    import shutil

    from .source import resolve_source

    src = resolve_source(source)
    store = _load()
    if src.identity not in store["sources"]:
        raise InputError(f"nothing is trusted for {src.identity}; trusted: {', '.join(store['sources']) or 'none'}")
    gone = store["sources"].pop(src.identity)
    _save(store)
    slot = config_dir() / "trust" / _slot(src.identity)
    if slot.is_dir() and not slot.is_symlink():
        shutil.rmtree(slot)
    return {"source": src.identity, **gone}


def trust_list() -> list[dict]:
    store = _load()
    return [{"source": s, "kind": v["kind"], "root_keyids": v.get("root_keyids", []),
             "anchor": str(config_dir() / v["anchor"])} for s, v in sorted(store["sources"].items())]


def trust_require(on: bool = True) -> dict:
    store = _load()
    store["require"] = bool(on)
    _save(store)
    return {"require": store["require"], "sources": len(store["sources"])}


def trust_policy() -> dict:
    store = _load()
    return {"require": store["require"] or _env_flag(REQUIRE_ENV), "require_env": _env_flag(REQUIRE_ENV),
            "sources": len(store["sources"])}


__all__ = ["Anchor", "CONFIG_ENV", "REQUIRE_ENV", "TRUST_ENV", "TrustStoreError", "anchor_for", "config_dir",
           "prepare_state_dir", "read_anchor", "trust_add", "trust_list", "trust_policy", "trust_remove",
           "trust_require"]
