"""Versioned, immutable releases in a mirror: content-addressed files, a version list, an index.

A mirror that ``zoo publish`` writes::

    manifest.json                        the latest version of every model (plain: browsers, curl)
    dense_b0/model.onnx ...              the latest version's files at their usual paths (an alias,
                                         replaced by rename when a new version is published)
    blobs/sha256/<2 hex>/<sha256>        every file of every version, by content; never rewritten
    releases/dense_b0/<V>/manifest.json  version V: the manifest of that one model, with its release
                                         record; written once, never rewritten
    releases/dense_b0/<V>/model.sig      version V's OpenSSF model signature (with --sign-key)
    index.json                           every version of every model (number, digest, sha256 of its
                                         manifest and signature), a counter and an expiry; signed
                                         with --sign-key

A version is a monotonic integer per model name and a digest of its files (``sha256:`` over the
sorted (path, bytes, sha256) list): publishing the same files again changes nothing; other bytes
make version N+1. The zoo's client reads versioned mirrors through :mod:`zoo.hub.resolve`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, cut
from ..jsonio import dumps as strict_json
from . import config
from .config import HubError, IntegrityError, Progress
from .paths import Dir, copy_verified, safe_name

INDEX_NAME = "index.json"
RELEASES = "releases"
INDEX_TYPE = "zoo-index"
INDEX_SPEC = 1
INDEX_TTL_S = 30 * 86400.0  # a signed index expires after this unless republished (--index-ttl-days)
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


def find_version(index: dict, name: str, spec, where: str) -> dict:
    """The index record of ``name`` at ``spec`` (None: the latest; an int; a ``sha256:`` digest)."""
    versions = index["signed"]["models"].get(name)
    if not versions:
        offered = ", ".join(sorted(index["signed"]["models"])) or "no models"
        from .config import UnknownModelError

        raise UnknownModelError(f"model {name!r} is not offered by {where}; it offers: {offered}")
    if spec is None:
        return versions[-1]
    for v in versions:
        if v["version"] == spec or v["digest"] == spec:
            return v
    from .config import UnknownModelError

    have = ", ".join(str(v["version"]) for v in versions)
    raise UnknownModelError(f"{name}@{spec} is not published at {where} (versions: {have})")


# --------------------------------------------------------------------------------------------------
# Publishing


class Publication:
    """One ``zoo publish`` into ``out``: which entries are new versions, then writing them."""

    def __init__(self, out: Dir, header: dict, *, sign_key=None, license=None, labels=None, publisher=None,
                 index_ttl_s: float = INDEX_TTL_S, renew_index: bool = False, progress: Progress = config.quiet):
        self.out, self.header, self.sign_key, self.progress = out, header, sign_key, progress
        self.license, self.labels, self.publisher = license, labels, publisher
        self.ttl, self.renew = index_ttl_s, renew_index
        where = str(out.path / INDEX_NAME)
        try:
            self.raw_index = out.read_bytes(INDEX_NAME, MAX_INDEX_BYTES)
        except FileNotFoundError:
            self.raw_index = None
        except IntegrityError:
            raise ManifestError(f"{where}: larger than {MAX_INDEX_BYTES:,} bytes; not overwriting it") from None
        self.index = parse_index(self.raw_index, where) if self.raw_index is not None else {"signed": empty_index(),
                                                                                          "signatures": []}
        if self.index["signatures"] and sign_key is None:
            raise InputError(f"{where} is signed; give --sign-key to publish into it (an unsigned index would be "
                             "refused by everyone who trusts this mirror)")
        self.models = {n: [dict(v) for v in vs] for n, vs in self.index["signed"]["models"].items()}
        self.new: list[dict] = []  # entries that become new versions
        self.sign: list[tuple[str, int, dict]] = []  # (name, version, entry) to sign
        self.signer_id = None
        if sign_key is not None:
            from .signing import key_id, load_private_key

            self.signer_id = key_id(load_private_key(sign_key))

    def stamp(self, entries: list[dict]) -> list[dict]:
        """Each entry as its latest published version (a new one where its files changed)."""
        out = []
        for e in entries:
            name, digest = e["model"], version_digest(e["files"])
            versions = self.models.setdefault(name, [])
            known = next((v for v in versions if v["digest"] == digest), None)
            if known is None:
                if self.labels is not None and len(self.labels) != e["num_classes"]:
                    raise InputError(f"--labels holds {len(self.labels)} label(s); {name} has {e['num_classes']} classes")
                rec = {"version": len(versions) + 1, "digest": digest, "published_at": stamp_time(now()),
                       "published_by": self.publisher or _default_publisher(), "license": self.license,
                       "labels": self.labels, "signed_by": self.signer_id}
                entry = dict({k: v for k, v in e.items() if k != "release"}, release=rec)
                self.new.append(entry)
                versions.append({"version": rec["version"], "digest": digest, "entry": entry})
                self.progress(f"{name}: new version {rec['version']} ({digest[:19]}...)")
            elif self.sign_key is not None and known.get("signature") is None:
                self.sign.append((name, known["version"], None))
            out.append(self._latest(name))
        return out

    def _latest(self, name: str) -> dict:
        v = self.models[name][-1]
        return v["entry"] if "entry" in v else self._read_entry(name, v)

    def _read_entry(self, name: str, v: dict) -> dict:
        rel = v["manifest"]
        raw = self.out.read_bytes(rel, config.MAX_MANIFEST_BYTES)
        if hashlib.sha256(raw).hexdigest() != v["manifest_sha256"]:
            raise IntegrityError(f"{self.out.path / rel} differs from its sha256 in {INDEX_NAME}; the mirror "
                                 "was changed by hand; not publishing into it")
        return mf.parse(raw, str(self.out.path / rel))["models"][0]

    def write(self, src_root: Dir) -> list[dict]:
        """Blobs, version manifests, signatures, then the index (readers see a version only when
        everything it names is in place). Returns a row per thing written."""
        rows = []
        for entry in self.new:
            for f in entry["files"]:
                if not self.out.matches(blob_path(f["sha256"]), f):
                    with src_root.open_read(f["path"]) as fh:
                        copy_verified(fh, self.out, blob_path(f["sha256"]), f, tag="publish")
            name, version = entry["model"], entry["release"]["version"]
            vdir = self.out.sub(version_dir(name, version), create=True)
            with vdir:
                if vdir.lstat(mf.MANIFEST_NAME) is not None:
                    raise HubError(f"{self.out.path / version_dir(name, version)} already exists but {INDEX_NAME} "
                                   "does not list it; refusing to overwrite a published version")
                data = (strict_json(dict(self.header, models=[entry])) + "\n").encode()
                mf.validate(dict(self.header, models=[entry]), str(vdir.path / mf.MANIFEST_NAME))
                vdir.write_atomic(mf.MANIFEST_NAME, data, tag="publish")
            rec = next(v for v in self.models[name] if v["version"] == version)
            rec.update(manifest=f"{version_dir(name, version)}/{mf.MANIFEST_NAME}",
                       manifest_sha256=hashlib.sha256(data).hexdigest())
            rec.pop("entry", None)
            if self.sign_key is not None:
                self.sign.append((name, version, entry))
            rows.append({"model": name, "version": version, "digest": entry["release"]["digest"], "status": "published"})
        for name, version, entry in self.sign:
            from .signing import SIGNATURE_NAME, sign_version

            rec = next(v for v in self.models[name] if v["version"] == version)
            entry = entry or self._read_entry(name, rec)
            bundle = sign_version(entry, self.sign_key)
            with self.out.sub(version_dir(name, version), create=True) as vdir:
                vdir.write_atomic(SIGNATURE_NAME, bundle, tag="publish")
            rec.update(signature=f"{version_dir(name, version)}/{SIGNATURE_NAME}",
                       signature_sha256=hashlib.sha256(bundle).hexdigest())
            self.progress(f"{name}: version {version} signed")
        self._write_index(bool(self.new or self.sign))
        return rows

    def _write_index(self, changed: bool) -> None:
        if not (changed or self.renew or self.raw_index is None):
            return
        old = self.index["signed"]
        signed = dict(empty_index(), version=old["version"] + 1,
                      expires=stamp_time(now() + dt.timedelta(seconds=self.ttl)),
                      models={n: [{k: v for k, v in r.items() if k != "entry"} for r in vs]
                              for n, vs in sorted(self.models.items()) if vs})
        if self.sign_key is not None:
            from .signing import sign_index

            env = sign_index(signed, self.sign_key)
        else:
            env = {"signed": signed, "signatures": []}
        self.out.write_atomic(INDEX_NAME, (strict_json(env) + "\n").encode(), tag="publish")
        self.progress(f"{INDEX_NAME}: version {signed['version']}, expires {signed['expires']}"
                      + (", signed" if self.sign_key is not None else ", unsigned"))


def _default_publisher() -> str:
    import getpass
    import os
    import socket

    who = os.environ.get("ZOO_PUBLISHER")
    if who:
        return cut(who, 200)
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):
        return "unknown"


__all__ = ["INDEX_NAME", "Publication", "blob_path", "check_license", "find_version", "parse_index", "parse_ref",
           "read_labels", "version_digest", "version_dir"]
