"""Publishing: a static mirror of a build, every file checked before anything is written.

The mirror is written like the cache: relative to folder descriptors, through temporary names,
following no link planted in it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, NoManifestError
from ..jsonio import dumps as strict_json
from . import config, release
from .cache import file_errors
from .config import DEFAULT_SOURCE, HubError, IntegrityError, Progress, quiet
from .external import external_data_files
from .paths import Dir, copy_verified
from .plan import find_entry
from .publication import Publication
from .source import Source, parse_manifest


def publish(artifacts: str | os.PathLike = DEFAULT_SOURCE, to: str | os.PathLike | None = None,
            names: Iterable[str] | None = None, *, progress: Progress = quiet, sign_key=None, root_keys=(),
            targets_keys=(), online_key=None, threshold: int | None = None, license=None, labels=None,
            publisher=None, index_ttl_days=None, targets_ttl_days=None, index_ttl_s: float | None = None,
            renew_index: bool = False, drop_unverified: bool = False) -> list[dict]:
    """Write a static mirror of ``artifacts`` into ``to``: manifest.json plus the files it lists.

    Every file is checked against the manifest before anything is written; only listed files are
    published; files already there with the right content are left alone (publishing again is a
    no-op). An existing mirror keeps its other models and every earlier version of these: files
    that changed make a new version (see :mod:`zoo.hub.release` for the layout). The mirror's TUF
    metadata (:mod:`zoo.hub.repo`) is signed with the keys given: ``sign_key`` (one key for every
    role), or ``root_keys`` / ``targets_keys`` (offline) and ``online_key`` (timestamp, snapshot),
    with ``threshold`` for a new root. ``license`` (SPDX), ``labels`` (a list, or a file) and
    ``publisher`` go into the new versions' release records. The mirror is locked while it is
    written; a publish killed at any point leaves it as it was or completable by the next one.
    Returns one row per file: model, path, bytes, sha256, status (published | unchanged).
    """
    from . import repo

    if index_ttl_s is not None and index_ttl_days is None:
        index_ttl_days = index_ttl_s / repo.DAY
    meta = {"license": release.check_license(license), "publisher": publisher,
            "labels": release.read_labels(labels) if isinstance(labels, (str, os.PathLike)) else labels,
            "online_days": repo.check_days(repo.ONLINE_DAYS if index_ttl_days is None else index_ttl_days,
                                           "--index-ttl-days", repo.ONLINE_MAX_DAYS),
            "targets_days": repo.check_days(repo.TARGETS_DAYS if targets_ttl_days is None else targets_ttl_days,
                                            "--targets-ttl-days", repo.OFFLINE_MAX_DAYS),
            "renew_index": renew_index, "drop_unverified": drop_unverified}
    if to in (None, ""):
        raise InputError("publish needs a destination folder (--to DIR)")
    src_root, dest = Path(artifacts).expanduser(), Path(to).expanduser()
    if not src_root.is_dir():
        raise InputError(f"artifacts folder {src_root} does not exist")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--to {dest} is not a folder")
    if dest.resolve() == src_root.resolve():
        raise InputError(f"--to {dest} is the artifacts folder itself; publish into another folder")
    # Keys before any file is hashed: a public key given to sign, a wrong passphrase, are bad input.
    meta["ring"] = repo.Keyring.from_files(sign_key=sign_key, root_keys=root_keys, targets_keys=targets_keys,
                                           online_key=online_key, threshold=threshold)
    with file_errors(f"cannot publish {src_root} to {dest}"):
        return _publish(src_root, dest, names, progress, meta)


def read_artifacts(src_root: Path, names, empty_error: type[Exception] = HubError):
    """A local artifacts folder as a source: (source, where, manifest, the entries of ``names`` or
    all); a missing manifest says to build first, an empty one is ``empty_error``."""
    where = str(src_root / mf.MANIFEST_NAME)
    src = Source(url=src_root.resolve().as_uri() + "/", root=src_root.resolve())
    try:
        manifest = src.read_manifest()
    except ManifestError as e:
        if str(e).startswith("no manifest"):
            raise NoManifestError(f"no manifest at {where}; run `zoo build` first") from None
        raise
    entries = [find_entry(manifest, n, src) for n in dict.fromkeys(names)] if names else list(manifest["models"])
    if not entries:
        raise empty_error(f"{where} lists no models; nothing to publish")
    return src, where, manifest, entries


def _publish(src_root: Path, dest: Path, names, progress: Progress, meta: dict) -> list[dict]:
    src, where, manifest, entries = read_artifacts(src_root, names)

    # 1. Check everything first: a bad file publishes nothing.
    with Dir.open_root(src.root, f"artifacts {src.root}") as root:
        for e in entries:
            for f in e["files"]:
                try:
                    src.verify_local(f)
                except IntegrityError as err:
                    raise IntegrityError(f"{err} ({where}); nothing was published") from None
                if f["role"] == "model":
                    with root.open_read(f["path"]) as fh:
                        external_data_files(fh.read(f["bytes"] + 1), f["path"], e)
            progress(f"{e['model']}: {len(e['files'])} file(s) verified")

    # 2. The mirror's manifest: the existing one (if any) with these entries replaced or added.
    # One publisher at a time (the builder's folder lock): two would both claim the next version.
    from ..builder.lock import artifacts_lock

    with artifacts_lock(dest, progress, what=f"zoo publish to {dest}", recover=False), \
            Dir.open_root(dest, f"--to {dest}", create=True) as out:
        header = {k: v for k, v in manifest.items() if k != "models"}
        pub = Publication(out, header, progress=progress, **meta)
        entries = pub.stamp(entries)  # each as its latest version: a new one where its files changed
        pub.needs_keys()
        for note in pub.notes:
            progress(f"note: {note}")
        try:
            raw = out.read_bytes(mf.MANIFEST_NAME, config.MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raw = None
        models = entries
        if raw is not None:
            models = list(parse_manifest(raw, str(dest / mf.MANIFEST_NAME))["models"])
            for e in entries:
                idx = next((i for i, m in enumerate(models) if m["model"] == e["model"]), None)
                if idx is None:
                    models.append(e)
                else:
                    models[idx] = e
        out_manifest = dict({k: v for k, v in manifest.items() if k != "models"}, models=models)
        mf.validate(out_manifest, str(dest / mf.MANIFEST_NAME))

        # 3. The versions (blobs, version manifests, signatures, index), then the latest files at
        # their usual paths (each through a temporary name), then the manifest, last.
        rows = []
        with Dir.open_root(src.root, f"artifacts {src.root}") as root:
            versions = pub.write(root)
            for e in entries:
                for f in e["files"]:
                    if out.matches(f["path"], f):
                        status = "unchanged"
                    else:
                        with out.open_read(release.blob_path(f["sha256"])) as fh:  # the version's copy
                            copy_verified(fh, out, f["path"], f, tag="publish")
                        status = "published"
                    rows.append({"model": e["model"], "path": f["path"], "bytes": f["bytes"], "sha256": f["sha256"],
                                 "role": f["role"], "precision": f["precision"], "status": status,
                                 "version": e["release"]["version"], "digest": e["release"]["digest"],
                                 "new_version": any(v["model"] == e["model"] for v in versions)})
        data = (strict_json(out_manifest) + "\n").encode()
        same = raw == data
        if not same:
            out.write_atomic(mf.MANIFEST_NAME, data, tag="publish")
    rows.append({"model": None, "path": mf.MANIFEST_NAME, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "role": "manifest", "precision": None, "status": "unchanged" if same else "published"})
    return rows
