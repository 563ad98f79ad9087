"""Versioned, immutable releases in a mirror: content-addressed files, versions, TUF metadata.

A mirror that ``zoo publish`` writes::

    manifest.json                        the latest version of every model (plain: browsers, curl)
    dense_b0/model.onnx ...              the latest version's files at their usual paths (an alias,
                                         replaced by rename when a new version is published)
    blobs/sha256/<2 hex>/<sha256>        every file of every version, by content; never rewritten
    releases/dense_b0/<V>/manifest.json  version V: the manifest of that one model, with its release
                                         record; written once, never rewritten (a TUF target)
    releases/dense_b0/<V>/model.sig      version V's OpenSSF model signature (a TUF target)
    metadata/                            the TUF repository (:mod:`zoo.hub.repo`)

A version is a monotonic integer per model name and a digest of its files (``sha256:`` over the
sorted (path, bytes, sha256) list): publishing the same files again changes nothing; other bytes
make the next version. Clients read versioned mirrors through :mod:`zoo.hub.metadata`. An older
zoo's ``index.json`` is parsed here too, to be read with a note and migrated. Writing a publish:
:mod:`zoo.hub.publication`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, cut
from .paths import safe_name

INDEX_NAME = "index.json"
RELEASES = "releases"
INDEX_TYPE = "zoo-index"
INDEX_SPEC = 1
MAX_INDEX_BYTES = 8 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SPDX = re.compile(r"(?:[A-Za-z0-9.+-]+|\((?=.*\)))(?:\s+(?:AND|OR|WITH)\s+\(?[A-Za-z0-9.+-]+\)?)*\)?")


def now() -> dt.datetime:  # one clock for publishing and for the client's expiry check (tests move it)
    return dt.datetime.now(dt.timezone.utc)


def stamp_time(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text, where: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ManifestError(f"{where}: {cut(repr(text), 60)} is not a time") from None
    if t.tzinfo is None:
        raise ManifestError(f"{where}: {cut(repr(text), 60)} has no time zone")
    return t


def blob_path(sha: str) -> str:
    return f"blobs/sha256/{sha[:2]}/{sha}"


def version_dir(name: str, version: int) -> str:
    return f"{RELEASES}/{safe_name(name)}/{int(version)}"


def version_digest(files: list[dict]) -> str:
    """The content digest of a version: sha256 over its sorted (path, bytes, sha256) list."""
    rows = sorted([f["path"], f["bytes"], f["sha256"]] for f in files)
    return "sha256:" + hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def parse_ref(ref: str) -> tuple[str, int | str | None]:
    """``NAME`` -> (NAME, None); ``NAME@3`` -> (NAME, 3); ``NAME@sha256:<64 hex>`` -> (NAME, digest)."""
    name, at, spec = str(ref).partition("@")
    safe_name(name)
    if not at:
        return name, None
    if re.fullmatch(r"[0-9]{1,9}", spec) and int(spec) >= 1:  # ASCII only: str.isdigit() takes '²'
        return name, int(spec)
    if _DIGEST.fullmatch(spec):
        return name, spec
    raise InputError(f"{cut(repr(ref), 120)}: after '@' give a version number (NAME@2) or a digest "
                     "(NAME@sha256:<64 hex digits>)")


def check_license(text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) > 200 or not _SPDX.fullmatch(text.strip()):
        raise InputError(f"--license {cut(repr(text), 60)}: not an SPDX license id or expression "
                         "(e.g. Apache-2.0, MIT, CC-BY-4.0, LicenseRef-Proprietary)")
    return text.strip()


def read_labels(path) -> list[str]:
    """Class labels: a JSON list of strings, or a text file with one label per line."""
    from pathlib import Path

    p = Path(path).expanduser()
    from ..fsutil import read_input

    raw = read_input(p, 1 << 20, "--labels")  # a FIFO or /dev/zero is refused, never read
    text = raw.decode("utf-8", "replace")
    try:
        labels = json.loads(text) if text.lstrip().startswith("[") else [ln.strip() for ln in text.splitlines() if ln.strip()]
    except ValueError as e:
        raise InputError(f"--labels {p}: not a JSON list ({cut(e, 80)})") from None
    if not labels or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in labels):
        raise InputError(f"--labels {p}: expected one non-empty label (at most 200 characters) per class")
    return labels


# --------------------------------------------------------------------------------------------------
# The index


def empty_index() -> dict:
    return {"_type": INDEX_TYPE, "spec_version": INDEX_SPEC, "version": 0, "expires": None, "models": {}}


def parse_index(raw: bytes, where: str) -> dict:
    """The index envelope ``{"signed": {...}, "signatures": [...]}``, its shape checked."""
    if len(raw) > MAX_INDEX_BYTES:
        raise ManifestError(f"{where}: larger than {MAX_INDEX_BYTES:,} bytes; refusing it")
    try:
        env = json.loads(raw)
        signed = env["signed"]
        ok = (signed["_type"] == INDEX_TYPE and signed["spec_version"] == INDEX_SPEC
              and isinstance(signed["version"], int) and isinstance(signed["models"], dict)
              and isinstance(env.get("signatures", []), list))
    except (ValueError, KeyError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise ManifestError(f"{where}: not a zoo index (spec {INDEX_SPEC})")
    for name, versions in signed["models"].items():
        safe_name(name, f"{where}: model name")
        if not isinstance(versions, list):
            raise ManifestError(f"{where}: {name}: versions are not a list")
        for i, v in enumerate(versions, 1):
            if not (isinstance(v, dict) and v.get("version") == i and _DIGEST.fullmatch(str(v.get("digest")))
                    and v.get("manifest") == f"{version_dir(name, i)}/{mf.MANIFEST_NAME}"
                    and re.fullmatch(r"[0-9a-f]{64}", str(v.get("manifest_sha256")))):
                raise ManifestError(f"{where}: {name} version {i}: malformed record")
            sig = v.get("signature")
            if sig is not None and (sig != f"{version_dir(name, i)}/model.sig"
                                    or not re.fullmatch(r"[0-9a-f]{64}", str(v.get("signature_sha256")))):
                raise ManifestError(f"{where}: {name} version {i}: malformed signature record")
    return env


__all__ = ["INDEX_NAME", "blob_path", "check_license", "parse_index", "parse_ref",
           "read_labels", "version_digest", "version_dir"]
