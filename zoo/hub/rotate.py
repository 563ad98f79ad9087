"""Key rotation, TUF's way: a new root version signed by the old root's threshold and the new one's.

``zoo rotate --to MIRROR --root-key OLD [...] --new-root-key NEW [...]`` writes root version N+1
(and re-signs targets, snapshot and timestamp when their keys change). A client that trusted root
version N follows the chain to N+1 on its next pull (python-tuf's ``Updater``) and from then on
refuses metadata signed with the keys the new root dropped.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..hub.paths import Dir
from . import repo
from .config import Progress, quiet


def rotate(to, *, root_keys=(), new_root_keys=(), threshold: int | None = None, targets_keys=(),
           new_targets_keys=(), online_key=None, new_online_key=None, root_days: float | None = None,
           progress: Progress = quiet) -> dict:
    """Rotate the keys of the mirror ``to``; returns the new root's version and key ids."""
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp

    from ..builder.lock import artifacts_lock

    days = repo.check_days(repo.ROOT_DAYS if root_days is None else root_days, "--root-ttl-days",
                           repo.OFFLINE_MAX_DAYS)
    dest = Path(to).expanduser()
    if not (dest / repo.METADATA).is_dir():
        raise InputError(f"{dest} has no TUF metadata ({repo.METADATA}/): publish into it with keys first")
    old = repo.Keyring.from_files(root_keys=root_keys, targets_keys=targets_keys, online_key=online_key)
    new = repo.Keyring.from_files(root_keys=new_root_keys or root_keys, targets_keys=new_targets_keys,
                                  online_key=new_online_key, threshold=threshold)
    if not old.root:
        raise InputError("a rotation is signed by the current root keys: give --root-key (the threshold of them)")
    with artifacts_lock(dest, progress, what=f"zoo rotate {dest}", recover=False), \
            Dir.open_root(dest, f"--to {dest}") as out:
        st = repo.read_state(out)
        if st is None or not st.signed:
            raise InputError(f"{dest} is not signed: publish into it with keys first")
        repo.verify_state(st, repo.Keyring(root=old.root), str(dest))
        cur = st.root.signed
        if len(old.root) < cur.roles["root"].threshold:
            raise InputError(f"the current root needs {cur.roles['root'].threshold} root key(s); {len(old.root)} given")
        # The new root: the current one with the root keys (and targets / online keys) replaced.
        root = Metadata.from_bytes(st.root.to_bytes())
        r = root.signed
        r.version += 1
        r.expires = repo.expiry(days)

        def replace(role, signers):
            for kid in list(r.roles[role].keyids):
                r.revoke_key(kid, role)
            for s in signers:
                r.add_key(s.public_key, role)

        replace("root", new.root)
        r.roles["root"].threshold = threshold or min(cur.roles["root"].threshold, len(new.root))
        resign_targets = bool(new.targets)
        if resign_targets:
            replace("targets", new.targets)
            r.roles["targets"].threshold = threshold or min(cur.roles["targets"].threshold, len(new.targets))
        if new.online is not None:
            replace("snapshot", [new.online])
            replace("timestamp", [new.online])
        for role in ("root", "targets"):
            if r.roles[role].threshold > len(r.roles[role].keyids):
                raise InputError(f"--threshold {r.roles[role].threshold} but the new root names only "
                                 f"{len(r.roles[role].keyids)} {role} key(s)")
        root.signatures.clear()
        for s in old.root + [s for s in new.root if s.public_key.keyid not in {o.public_key.keyid for o in old.root}]:
            root.sign(s, append=True)
        # Both thresholds must hold, as every client checks them.
        cur.verify_delegate("root", root.signed_bytes, root.signatures)
        r.verify_delegate("root", root.signed_bytes, root.signatures)
        files = [(repo.meta_name("root", r.version), repo.to_bytes(root)), (repo.meta_name("root"), repo.to_bytes(root))]
        online = new.online or old.online
        if resign_targets or new.online is not None:
            if online is None:
                raise InputError("re-signing the snapshot and timestamp needs the online key: give --online-key "
                                 "(or --new-online-key)")
            targets = st.targets
            if resign_targets:
                targets = Metadata.from_bytes(st.targets.to_bytes())
                targets.signed.version += 1
                files += _resign_bundles(out, targets.signed, new.targets[0], progress)
                repo.sign(targets, new.targets, "targets", r.roles["targets"].threshold)
                files.append((repo.meta_name("targets", targets.signed.version), repo.to_bytes(targets)))
            snap = Metadata(Snapshot(version=st.snapshot.signed.version + 1, spec_version=repo.SPEC_VERSION,
                                     expires=repo.expiry(repo.ONLINE_DAYS),
                                     meta={"targets.json": MetaFile(version=targets.signed.version)}))
            ts = Metadata(Timestamp(version=st.timestamp.signed.version + 1, spec_version=repo.SPEC_VERSION,
                                    expires=repo.expiry(repo.ONLINE_DAYS),
                                    snapshot_meta=MetaFile(version=snap.signed.version)))
            repo.authorise(r, repo.Keyring(online=online), str(dest))
            repo.sign(snap, [online], "snapshot", 1)
            repo.sign(ts, [online], "timestamp", 1)
            files += [(repo.meta_name("snapshot", snap.signed.version), repo.to_bytes(snap)),
                      (repo.meta_name("timestamp"), repo.to_bytes(ts))]
        for rel, data in files:  # bundles first, the metadata that names them after, timestamp last
            head, _, base = rel.rpartition("/")
            with out.sub(head, create=True) as d:
                d.write_atomic(base, data, tag="rotate")
        progress(f"root version {r.version}: root keys {', '.join(k[:12] for k in r.roles['root'].keyids)} "
                 f"(threshold {r.roles['root'].threshold})")
        return {"to": str(dest), "root_version": r.version, "root_keyids": list(r.roles["root"].keyids),
                "root_threshold": r.roles["root"].threshold, "targets_keyids": list(r.roles["targets"].keyids),
                "timestamp_keyids": list(r.roles["timestamp"].keyids)}


def _resign_bundles(out, targets, content_signer, progress) -> list[tuple[str, bytes]]:
    """A new targets key re-signs every version's OpenSSF model signature (clients check bundles
    with the targets keys the newest root names), each checked against its pinned manifest first."""
    from ..builder import manifest as mf
    from . import signing
    from .attest import sign_statement, statements_for
    from .publication import record_path
    from .release import version_digest

    files = []
    for name, vs in repo.versions_of_targets(targets.targets).items():
        for v, rec in sorted(vs.items()):
            path, tf = rec["manifest"]
            raw = out.read_bytes(path, tf.length)
            tf.verify_length_and_hashes(raw)  # the signed metadata pins it: re-signing vouches for nothing new
            entry = mf.parse(raw, str(out.path / path))["models"][0]
            if version_digest(entry["files"]) != rec["digest"]:
                raise repo.TrustStateError(f"{out.path / path} is not {name} version {v}; not re-signing it")
            bundle = signing.sign_version(entry, content_signer)
            spath = path.rsplit("/", 1)[0] + "/" + signing.SIGNATURE_NAME
            tfs = repo.target_file(spath, bundle, {"model": name, "version": v, "kind": "signature"})
            targets.targets[spath] = tfs
            files += [(spath, bundle), (repo.hashed_name(spath, tfs.hashes["sha256"]), bundle)]
            for rpath in list(rec["extra"]):  # the verification records: signed by the new key too
                del targets.targets[rpath]
            for st in statements_for(entry):
                sha = st["subject"][0]["digest"]["sha256"]
                rpath, env = record_path(name, v, sha), sign_statement(st, content_signer)
                tfr = repo.target_file(rpath, env, {"model": name, "version": v, "kind": "record", "file": sha})
                targets.targets[rpath] = tfr
                files += [(rpath, env), (repo.hashed_name(rpath, tfr.hashes["sha256"]), env)]
            progress(f"{name}: version {v} re-signed with the new targets key")
    return files


__all__ = ["rotate"]
