"""Which public key a source must be signed with: ``--trust KEY``, else ``$ZOO_TRUST``, else the
persistent setting ``zoo trust add SOURCE KEY`` wrote.

Settings live in ``$ZOO_CONFIG`` (else ``$XDG_CONFIG_HOME/zoo``, else ``~/.config/zoo``):
``trust.json`` maps a source (as the zoo prints it, credentials removed) to a copy of its public
key under ``keys/``, so moving or deleting the original key file changes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError, cut
from ..fsutil import MissingInputError, atomic_write_bytes, read_input
from .source import Source, resolve_source

TRUST_ENV = "ZOO_TRUST"
CONFIG_ENV = "ZOO_CONFIG"
TRUST_FILE = "trust.json"


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "zoo"
    return Path.home() / ".config" / "zoo"


def _load() -> dict:
    p = config_dir() / TRUST_FILE
    try:
        data = json.loads(read_input(p, 1 << 20, "trust settings"))
    except MissingInputError:
        return {"sources": {}}
    except InputError as e:  # a FIFO, a device, too large: one line, never a block
        raise InputError(f"{e}; fix or remove it") from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"{p}: unreadable trust settings ({cut(e, 100)}); fix or remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise InputError(f"{p}: not a zoo trust file; fix or remove it")
    return data


def _save(data: dict) -> None:
    atomic_write_bytes(config_dir() / TRUST_FILE, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def trust_add(source, key_path) -> dict:
    """Trust ``key_path`` (a PEM public key) for ``source`` from now on; replaces an earlier key."""
    from .signing import key_id, load_public_key, public_pem

    src = resolve_source(source)
    key = load_public_key(key_path)
    kid = key_id(key)
    keys = config_dir() / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    stored = keys / f"{kid.split(':')[1][:32]}.pub"
    atomic_write_bytes(stored, public_pem(key))
    data = _load()
    data["sources"][src.shown] = {"key_id": kid, "key_file": str(stored)}
    _save(data)
    return {"source": src.shown, "key_id": kid, "key_file": str(stored)}


def trust_remove(source) -> dict:
    src = resolve_source(source)
    data = _load()
    if src.shown not in data["sources"]:
        raise InputError(f"no key is trusted for {src.shown}; trusted: {', '.join(data['sources']) or 'none'}")
    gone = data["sources"].pop(src.shown)
    _save(data)
    return {"source": src.shown, **gone}


def trust_list() -> list[dict]:
    return [{"source": s, **v} for s, v in sorted(_load()["sources"].items())]


def trusted_key(src: Source, explicit=None) -> str | None:
    """The public key file ``src`` must be signed with, or None (no trust configured)."""
    if explicit not in (None, ""):
        return os.fspath(explicit)
    if os.environ.get(TRUST_ENV):
        return os.environ[TRUST_ENV]
    rec = _load()["sources"].get(src.shown)
    return rec["key_file"] if rec else None


__all__ = ["CONFIG_ENV", "TRUST_ENV", "config_dir", "trust_add", "trust_list", "trust_remove", "trusted_key"]
