"""One ``zoo publish`` into a mirror (held under the mirror's lock by :mod:`zoo.hub.publish`): what the
mirror holds, checked first against the publisher's keys (:mod:`zoo.hub.repo`); which entries are new
versions; then writing them, the TUF metadata last. The layout is :mod:`zoo.hub.release`'s."""

from __future__ import annotations

import hashlib

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, cut
from ..jsonio import dumps as strict_json
from . import config, repo
from .config import IntegrityError, Progress
from .paths import Dir, copy_verified, safe_name
from .release import (INDEX_NAME, MAX_INDEX_BYTES, blob_path, now, parse_index, stamp_time, version_digest,
                      version_dir)


class Publication:
    """One ``zoo publish`` into ``out`` (held under the mirror's lock by the caller): what the mirror
    holds, checked first; which entries are new versions; then writing them, metadata last.

    Before anything is signed, the mirror's current metadata is verified with the publisher's keys
    and every existing version against its recorded sha256, digest and blobs; versions of an
    unsigned mirror are signed only when they match the local, checked artifacts."""

    def __init__(self, out: Dir, header: dict, *, ring=None, license=None, labels=None, publisher=None,
                 online_days: float | None = None, targets_days: float | None = None, renew_index: bool = False,
                 drop_unverified: bool = False, progress: Progress = config.quiet):
        self.out, self.header, self.progress = out, header, progress
        self.ring = ring or repo.Keyring()
        self.license, self.labels, self.publisher = license, labels, publisher
        self.online_days = repo.ONLINE_DAYS if online_days is None else online_days
        self.targets_days = repo.TARGETS_DAYS if targets_days is None else targets_days
        self.renew, self.drop_unverified = renew_index, drop_unverified
        self.where = str(out.path)
        self.state = repo.read_state(out)
        self.legacy = None  # a pre-TUF index.json being migrated
        self.versions: dict[str, dict[int, dict]] = {}
        self.trusted = False  # the existing versions are the publisher's (its keys signed their metadata)
        self.notes: list[str] = []
        if self.state is not None and self.state.signed:
            if not self.ring.any:
                raise InputError(f"{self.where} is signed; give its keys to publish into it (--sign-key, or "
                                 "--targets-key and --online-key): an unsigned release would be refused by everyone "
                                 "who trusts this mirror")
            repo.verify_state(self.state, self.ring, self.where)
            self.trusted = True
        elif self.state is None:
            self._read_legacy()
        self._load_versions()
        self.new: list[dict] = []
        self.to_sign: list[tuple[str, int]] = []

    # -- what the mirror holds

    def _read_legacy(self) -> None:
        try:
            raw = self.out.read_bytes(INDEX_NAME, MAX_INDEX_BYTES)
        except FileNotFoundError:
            return
        except IntegrityError:
            raise ManifestError(f"{self.out.path / INDEX_NAME}: larger than {MAX_INDEX_BYTES:,} bytes; not "
                                "overwriting it") from None
        env = parse_index(raw, str(self.out.path / INDEX_NAME))
        self.progress(f"note: {self.out.path / INDEX_NAME} is a pre-TUF index; "
                      + ("migrating it to TUF metadata" if self.ring.any else "keeping its versions"))
        if env["signatures"]:
            from . import signing

            if not self.ring.content_signer:
                raise InputError(f"{self.out.path / INDEX_NAME} is signed; give its key (--sign-key) to publish into it")
            try:
                signing.verify_index(env, self.ring.content_signer.zoo_key.public_key(), str(self.out.path / INDEX_NAME))
            except signing.SignatureError as e:
                raise repo.TrustStateError(f"{e}; not signing anything on top of it") from None
            self.trusted = True
        self.legacy = env

    def _load_versions(self) -> None:
        if self.state is not None and self.state.targets is not None:
            for name, vs in self.state.versions().items():
                for v, rec in sorted(vs.items()):
                    mpath, mtf = rec["manifest"]
                    spath, stf = rec["signature"] or (None, None)
                    self._load_one(name, v, rec.get("digest"), mpath, mtf.hashes.get("sha256"), mtf.length,
                                   spath, stf.hashes.get("sha256") if stf else None)
                    for rpath, rtf in rec["extra"].items():  # signed verification records (zoo.hub.attest)
                        data = self._read(rpath, rtf.length)
                        if hashlib.sha256(data).hexdigest() != rtf.hashes.get("sha256"):
                            raise repo.TrustStateError(f"{self.out.path / rpath} differs from its sha256 in the "
                                                       "mirror's metadata; not publishing into it")
                        self.versions[name][v]["records"][rpath] = data
        elif self.legacy is not None:
            for name, vs in self.legacy["signed"]["models"].items():
                for r in vs:
                    self._load_one(name, r["version"], r["digest"], r["manifest"], r["manifest_sha256"], None,
                                   r.get("signature"), r.get("signature_sha256"))

    def _load_one(self, name, v, digest, mpath, msha, mlen, spath, ssha) -> None:
        bad = repo.TrustStateError
        safe_name(name, f"{self.where}: model name")
        if mpath != f"{version_dir(name, v)}/{mf.MANIFEST_NAME}":
            raise bad(f"{self.where}: {name} version {v} names its manifest at {cut(mpath, 80)!r}")
        raw = self._read(mpath, config.MAX_MANIFEST_BYTES)
        if hashlib.sha256(raw).hexdigest() != msha or (mlen is not None and len(raw) != mlen):
            raise bad(f"{self.out.path / mpath} differs from its sha256 in the mirror's metadata (changed by hand?); "
                      "not publishing into it")
        entry = mf.parse(raw, str(self.out.path / mpath))["models"][0]
        rel = entry.get("release") or {}
        if entry["model"] != name or rel.get("version") != v or rel.get("digest") != digest \
                or version_digest(entry["files"]) != digest:
            raise bad(f"{self.out.path / mpath} is not {name} version {v} ({cut(digest, 19)}...); not publishing into it")
        for f in entry["files"]:
            if not self.out.matches(blob_path(f["sha256"]), f):
                raise bad(f"{self.out.path / blob_path(f['sha256'])} ({name} version {v}'s {f['path']}) is missing or "
                          "damaged; not publishing into it")
        sig = None
        if spath is not None:
            from .signing import SIGNATURE_NAME, MAX_SIGNATURE_BYTES

            if spath != f"{version_dir(name, v)}/{SIGNATURE_NAME}":
                raise bad(f"{self.where}: {name} version {v} names its signature at {cut(spath, 80)!r}")
            sig = self._read(spath, MAX_SIGNATURE_BYTES)
            if hashlib.sha256(sig).hexdigest() != ssha:
                raise bad(f"{self.out.path / spath} differs from its sha256 in the mirror's metadata; not publishing "
                          "into it")
        self.versions.setdefault(name, {})[v] = {"version": v, "digest": digest, "entry": entry, "manifest": mpath,
                                                 "manifest_bytes": raw, "signature": spath, "signature_bytes": sig,
                                                 "records": {}}

    def _read(self, rel: str, limit: int) -> bytes:
        try:
            return self.out.read_bytes(rel, limit)
        except FileNotFoundError:
            raise repo.TrustStateError(f"{self.out.path / rel} is missing (the mirror's metadata lists it); not "
                                       "publishing into it") from None
        except IntegrityError:
            raise repo.TrustStateError(f"{self.out.path / rel}: larger than {limit:,} bytes") from None

    # -- deciding

    def stamp(self, entries: list[dict]) -> list[dict]:
        """Each entry as its latest published version (a new one where its files changed)."""
        out = []
        local = {(e["model"], version_digest(e["files"])): e for e in entries}
        self._adopt(local)
        for e in entries:
            name, digest = e["model"], version_digest(e["files"])
            versions = self.versions.setdefault(name, {})
            known = next((v for v in versions.values() if v["digest"] == digest), None)
            if known is None:
                if self.labels is not None and len(self.labels) != e["num_classes"]:
                    raise InputError(f"--labels holds {len(self.labels)} label(s); {name} has {e['num_classes']} classes")
                # max + 1: versions dropped from a signed release (--drop-unverified) keep their numbers
                rec = {"version": max(versions, default=0) + 1, "digest": digest, "published_at": stamp_time(now()),
                       "published_by": self.publisher or _default_publisher(), "license": self.license,
                       "labels": self.labels, "signed_by": self._signer_id()}
                entry = dict({k: v for k, v in e.items() if k != "release"}, release=rec)
                self.new.append(entry)
                versions[rec["version"]] = {"version": rec["version"], "digest": digest, "entry": entry, "new": True,
                                            "manifest": None, "signature": None, "records": {}}
                self.progress(f"{name}: new version {rec['version']} ({digest[:19]}...)")
            else:
                rel = known["entry"].get("release") or {}
                if (self.license is not None and self.license != rel.get("license")) or \
                        (self.labels is not None and self.labels != rel.get("labels")):
                    self.notes.append(f"{name}: version {known['version']} already holds these files with license "
                                      f"{rel.get('license')!r}; --license/--labels were not applied (a version's "
                                      "records are never rewritten: publish a new build to make a new version)")
            out.append(self._latest(name))
        for name, vs in self.versions.items():
            for v in vs.values():
                if v["signature"] is None and self.ring.content_signer is not None:
                    self.to_sign.append((name, v["version"]))
        return out

    def _signer_id(self):
        from .keys import key_id

        s = self.ring.content_signer
        return None if s is None else key_id(s.zoo_key)

    def _adopt(self, local: dict) -> None:
        """Signing an unsigned mirror: each existing version must be one the publisher can check,
        i.e. the local artifacts hold exactly its files (and the same entry, release record aside)."""
        if self.trusted or not self.ring.any:
            return
        drop = []
        for name, vs in self.versions.items():
            for v, rec in vs.items():
                mine = local.get((name, rec["digest"]))
                strip = lambda e: {k: x for k, x in e.items() if k != "release"}  # noqa: E731
                if mine is not None and strip(mine) == strip(rec["entry"]):
                    self.progress(f"{name}: version {v} checked against the artifacts folder; signing it "
                                  f"(license {(rec['entry'].get('release') or {}).get('license')!r} as published)")
                    continue
                if not self.drop_unverified:
                                raise repo.TrustStateError(
                        f"{name} version {v} in {self.where} is unsigned and the artifacts folder does not hold its "
                        "files: signing it would vouch for bytes the publisher never checked; publish from the build "
                        "that made it, or give --drop-unverified to leave it out of the signed release")
                drop.append((name, v))
        for name, v in drop:
            self.notes.append(f"{name}: unsigned version {v} left out of the signed release (--drop-unverified)")
            del self.versions[name][v]
            if not self.versions[name]:
                del self.versions[name]

    def _latest(self, name: str) -> dict:
        vs = self.versions[name]
        return vs[max(vs)]["entry"]

    # -- writing

    def needs_keys(self) -> None:
        """Refuse up front (bad input) when the keys given cannot sign what this publish changes."""
        ring, st = self.ring, self.state
        if not ring.any:
            return
        creating = st is None or not st.signed
        if creating and not (ring.root and ring.targets and ring.online):
            raise InputError("a mirror's first signed publish makes its root: give --sign-key (one key for every role) "
                             "or --root-key, --targets-key and --online-key")
        if (self.new or self.to_sign or creating) and not ring.targets:
            raise InputError("new versions are signed with the targets key: give --targets-key (or --sign-key)")
        if not ring.online:
            raise InputError("the snapshot and timestamp are signed with the online key: give --online-key "
                             "(or --sign-key)")

    def write(self, src_root: Dir) -> list[dict]:
        """Blobs, version manifests and signatures, then the metadata (targets, snapshot, root,
        timestamp last: readers see a version only when everything it names is in place)."""
        from .signing import SIGNATURE_NAME, sign_version

        self.needs_keys()
        rows = []
        for entry in self.new:
            for f in entry["files"]:
                if not self.out.matches(blob_path(f["sha256"]), f):
                    with src_root.open_read(f["path"]) as fh:
                        copy_verified(fh, self.out, blob_path(f["sha256"]), f, tag="publish")
            name, version = entry["model"], entry["release"]["version"]
            vd = version_dir(name, version)
            if self.out.lstat(vd) is not None:  # left by a publish killed before its metadata: never listed
                self.out.remove(vd)
            data = (strict_json(dict(self.header, models=[entry])) + "\n").encode()
            mf.validate(dict(self.header, models=[entry]), str(self.out.path / vd / mf.MANIFEST_NAME))
            with self.out.sub(vd, create=True) as vdir:
                vdir.write_atomic(mf.MANIFEST_NAME, data, tag="publish")
            rec = self.versions[name][version]
            rec.update(manifest=f"{vd}/{mf.MANIFEST_NAME}", manifest_bytes=data)
            rows.append({"model": name, "version": version, "digest": entry["release"]["digest"], "status": "published"})
        for name, version in self.to_sign:
            rec = self.versions[name][version]
            bundle = sign_version(rec["entry"], self.ring.content_signer)
            with self.out.sub(version_dir(name, version), create=True) as vdir:
                vdir.write_atomic(SIGNATURE_NAME, bundle, tag="publish")
            rec.update(signature=f"{version_dir(name, version)}/{SIGNATURE_NAME}", signature_bytes=bundle)
            rec["records"] = sign_records(self.out, name, version, rec["entry"], self.ring.content_signer)
            self.progress(f"{name}: version {version} signed ({len(rec['records'])} verification record(s))")
        self._write_metadata(bool(self.new or self.to_sign))
        return rows

    def targets(self) -> dict:
        out = {}
        for name, vs in sorted(self.versions.items()):
            for v, rec in sorted(vs.items()):
                custom = {"model": name, "version": v, "digest": rec["digest"], "kind": "manifest"}
                out[rec["manifest"]] = repo.target_file(rec["manifest"], rec["manifest_bytes"], custom)
                if rec["signature"] is not None:
                    custom = {"model": name, "version": v, "kind": "signature"}
                    out[rec["signature"]] = repo.target_file(rec["signature"], rec["signature_bytes"], custom)
                for rpath, data in sorted(rec.get("records", {}).items()):
                    custom = {"model": name, "version": v, "kind": "record", "file": record_file(rpath)}
                    out[rpath] = repo.target_file(rpath, data, custom)
        return out

    def _write_metadata(self, changed: bool) -> None:
        from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

        ring, st = self.ring, self.state
        adopting = ring.any and (st is None or not st.signed)
        if not (changed or adopting or self.renew or st is None or self.legacy is not None):
            return
        online = [ring.online] if ring.online else []
        root = st.root if st is not None and not adopting else None
        root_changed = root is None
        if root is None:
            root = repo.new_root(ring)
            if ring.root:
                repo.sign(root, ring.root, "root", root.signed.roles["root"].threshold)
        roles = root.signed.roles
        old_t = st.targets.signed.version if st is not None and st.targets is not None else 0
        old_s = st.snapshot.signed.version if st is not None and st.snapshot is not None else 0
        old_ts = st.timestamp.signed.version if st is not None and st.timestamp is not None else 0
        files = []  # (rel, bytes), written in this order
        targets = st.targets if st is not None and st.targets is not None and not (changed or adopting or root_changed) \
            else None
        if targets is None:
            targets = Metadata(Targets(version=old_t + 1, spec_version=repo.SPEC_VERSION,
                                       expires=repo.expiry(self.targets_days), targets=self.targets()))
            if ring.targets:
                repo.sign(targets, ring.targets, "targets", roles["targets"].threshold)
            for path, tf in targets.signed.targets.items():  # TUF clients fetch targets by hash
                data = self.versions_bytes(path)
                files.append((repo.hashed_name(path, tf.hashes["sha256"]), data))
            files.append((repo.meta_name("targets", targets.signed.version), repo.to_bytes(targets)))
        snapshot = Metadata(Snapshot(version=old_s + 1, spec_version=repo.SPEC_VERSION,
                                     expires=repo.expiry(self.online_days),
                                     meta={"targets.json": MetaFile(version=targets.signed.version)}))
        timestamp = Metadata(Timestamp(version=old_ts + 1, spec_version=repo.SPEC_VERSION,
                                       expires=repo.expiry(self.online_days),
                                       snapshot_meta=MetaFile(version=snapshot.signed.version)))
        if online:
            repo.sign(snapshot, online, "snapshot", roles["snapshot"].threshold)
            repo.sign(timestamp, online, "timestamp", roles["timestamp"].threshold)
        files.append((repo.meta_name("snapshot", snapshot.signed.version), repo.to_bytes(snapshot)))
        if root_changed:
            files.append((repo.meta_name("root", root.signed.version), repo.to_bytes(root)))
            files.append((repo.meta_name("root"), repo.to_bytes(root)))
        files.append((repo.meta_name("timestamp"), repo.to_bytes(timestamp)))  # last: what makes it all current
        for rel, data in files:
            head, _, base = rel.rpartition("/")
            with self.out.sub(head, create=True) as d:
                if head == repo.METADATA or not d.matches(base, {"bytes": len(data),
                                                                  "sha256": hashlib.sha256(data).hexdigest()}):
                    d.write_atomic(base, data, tag="publish")
        if self.legacy is not None and self.out.lstat(INDEX_NAME) is not None:
            self.out.unlink(INDEX_NAME)  # migrated: its versions are in the TUF metadata now
        self.progress(f"metadata: targets version {targets.signed.version}, timestamp version "
                      f"{timestamp.signed.version}, expires {stamp_time(timestamp.signed.expires)}"
                      + (", signed" if online else ", unsigned"))

    def versions_bytes(self, path: str) -> bytes:
        for vs in self.versions.values():
            for rec in vs.values():
                if rec["manifest"] == path:
                    return rec["manifest_bytes"]
                if rec["signature"] == path:
                    return rec["signature_bytes"]
                if path in rec.get("records", {}):
                    return rec["records"][path]
        raise KeyError(path)


RECORDS = "records"  # releases/NAME/V/records/<sha256 of the file>.intoto.json: a DSSE envelope each


def record_path(name: str, version: int, sha: str) -> str:
    return f"{version_dir(name, version)}/{RECORDS}/{sha}.intoto.json"


def record_file(path: str) -> str:
    """The sha256 of the file a record's path names."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def sign_records(out: Dir, name: str, version: int, entry: dict, signer) -> dict[str, bytes]:
    """One signed in-toto test-result Statement per file of the version a runtime loads
    (:mod:`zoo.hub.attest`), written under the version's folder; path -> envelope bytes."""
    from .attest import sign_statement, statements_for

    written = {}
    for st in statements_for(entry):
        sha = st["subject"][0]["digest"]["sha256"]
        env = sign_statement(st, signer)
        rel = record_path(name, version, sha)
        head, _, base = rel.rpartition("/")
        with out.sub(head, create=True) as d:
            d.write_atomic(base, env, tag="publish")
        written[rel] = env
    return written


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


__all__ = ["Publication", "RECORDS", "record_file", "record_path", "sign_records"]
