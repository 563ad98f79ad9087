"""Lockfiles: exactly which bytes of which model versions a project uses.

``zoo lock NAME[@V]... --from SOURCE`` writes one; ``zoo pull --lock FILE`` (and ``hub.session`` /
``hub.load`` with ``lock=``) brings in exactly those bytes, from the source it names or any other
mirror holding the same version (``--from``), and fails otherwise. A lockfile is JSON::

    {"lock_version": 1, "source": "https://example.org/zoo/",
     "models": {"dense_b0": {"version": 1, "digest": "sha256:...", "license": "Apache-2.0",
                             "files": [{"path": "dense_b0/model.onnx", "bytes": ..., "sha256": "...",
                                        "role": "model", "precision": "fp32"}, ...]}}}
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InputError, cut
from ..fsutil import atomic_write_bytes, read_input
from .config import IntegrityError
from .paths import safe_name, safe_relpath

LOCK_VERSION = 1
MAX_LOCK_BYTES = 4 << 20
_SHA = re.compile(r"[0-9a-f]{64}")
_FILE_KEYS = ("path", "bytes", "sha256", "role", "precision")


def lock_record(entry: dict) -> dict:
    from .release import version_digest

    rel = entry.get("release") or {}
    return {"version": rel.get("version"), "digest": version_digest(entry["files"]), "license": rel.get("license"),
            "files": [{k: f[k] for k in _FILE_KEYS} for f in sorted(entry["files"], key=lambda f: f["path"])]}


def write_lock(path, source_shown: str, entries: list[dict]) -> dict:
    lock = {"lock_version": LOCK_VERSION, "source": source_shown,
            "models": {e["model"]: lock_record(e) for e in entries}}
    out = Path(path).expanduser()
    if not out.parent.is_dir():  # a mistyped folder is refused, not made (atomic writes create folders)
        raise InputError(f"cannot write lockfile {os.fspath(path)}: the folder {out.parent} does not exist")
    atomic_write_bytes(out, (json.dumps(lock, indent=2) + "\n").encode())
    return lock


def read_lock(path) -> dict:
    """The lockfile at ``path``, every field checked (it names files the zoo will write)."""
    p = Path(os.fspath(path)).expanduser()
    raw = read_input(p, MAX_LOCK_BYTES, "lockfile")  # a FIFO or /dev/zero is refused, never read
    bad = InputError(f"{p} is not a zoo lockfile (lock_version {LOCK_VERSION})")
    try:
        lock = json.loads(raw) if len(raw) <= MAX_LOCK_BYTES else None
        ok = lock["lock_version"] == LOCK_VERSION and isinstance(lock["source"], str) and isinstance(lock["models"], dict)
    except (ValueError, KeyError, TypeError, RecursionError):
        ok = False
    if not ok or not lock["models"]:
        raise bad
    for name, m in lock["models"].items():
        safe_name(name, f"{p}: model name")
        try:
            good = (re.fullmatch(r"sha256:[0-9a-f]{64}", m["digest"]) and (m["version"] is None or isinstance(m["version"], int))
                    and m["files"] and all(isinstance(f["bytes"], int) and f["bytes"] >= 0 and _SHA.fullmatch(f["sha256"])
                                           and safe_relpath(f["path"], f"{p}: {name}") for f in m["files"]))
        except (KeyError, TypeError):
            good = False
        if not good:
            raise InputError(f"{p}: {cut(name, 60)}: malformed entry")
    return lock


def check_entry(entry: dict, pinned: dict, src) -> None:
    """The source's version must hold exactly the lockfile's files (paths, sizes, sha256)."""
    from .release import version_digest

    have = {(f["path"], f["bytes"], f["sha256"]) for f in entry["files"]}
    want = {(f["path"], f["bytes"], f["sha256"]) for f in pinned["files"]}
    if have != want or version_digest(entry["files"]) != pinned["digest"]:
        raise IntegrityError(f"{entry['model']} at {src} is not the locked {pinned['digest'][:19]}... "
                             "(other files, sizes or sha256); refusing it")


__all__ = ["LOCK_VERSION", "check_entry", "lock_record", "read_lock", "write_lock"]
