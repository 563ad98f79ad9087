"""What every publishing format starts from: a local build or mirror, each file checked first.

A format is written from a folder with ``manifest.json`` (``artifacts/`` or a mirror made by
``zoo publish``). Every file is checked against the manifest before anything is written, as
``zoo publish`` does. The release's version, digest and signature come in as plain values
(:class:`Release`): the releases work (versions, lockfiles, signatures) fills them in; without
it, the version is the model file's ``model_version`` and the digest the model file's sha256.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..hub.config import IntegrityError, Progress, quiet
from ..hub.external import external_data_files
from ..hub.paths import Dir, copy_verified
from ..hub.publish import read_artifacts
from ..hub.source import Source
from ..modelinfo import DEFAULT_VERSION, labels_of
from ..spec import EXTERNAL_ROLE, FILE_PRECISIONS


@dataclass(frozen=True)
class Release:
    """What a release adds to a model's files (all optional): its version number, its content
    digest (``sha256:<hex>``) and the path of its signature file."""

    version: int | None = None
    digest: str | None = None
    signature: Path | None = None


@dataclass
class ModelFiles:
    """One model of a checked source: its manifest entry, the manifest's other fields, the model
    file's ONNX metadata, and the release it belongs to."""

    src: Source
    header: dict
    entry: dict
    release: Release
    meta: dict = field(default_factory=dict)  # the fp32 model file's metadata_props
    domain: str = ""
    doc_string: str = ""
    model_version: int = DEFAULT_VERSION

    @property
    def name(self) -> str:
        return self.entry["model"]

    @property
    def version(self) -> int:
        return self.release.version or self.model_version or DEFAULT_VERSION

    @property
    def digest(self) -> str:
        return self.release.digest or f"sha256:{self.entry['metadata']['model_sha']}"

    @property
    def labels(self) -> list[str] | None:
        return labels_of(self.meta)

    def local(self, rec: dict) -> Path:
        return self.src.root / rec["path"]

    def read(self, rec: dict) -> bytes:
        with Dir.open_root(self.src.root, f"source {self.src}") as root, root.open_read(rec["path"]) as f:
            return f.read(rec["bytes"] + 1)

    def models(self) -> list[dict]:
        """The model files (role ``model``), in the order of FILE_PRECISIONS."""
        recs = [f for f in self.entry["files"] if f["role"] == "model"]
        return sorted(recs, key=lambda f: (FILE_PRECISIONS.index(f["precision"]), f["path"]))

    def data_of(self, rec: dict) -> dict | None:
        """The external-data record of model file ``rec``, if it has one."""
        return next((f for f in self.entry["files"] if f["role"] == EXTERNAL_ROLE and f.get("of") == rec["path"]),
                    None)

    def relative(self, rec: dict) -> str:
        """``dense_b0/test_data_set_0/input_0.pb`` -> ``test_data_set_0/input_0.pb``: the path inside
        the model's own folder."""
        head, _, rest = rec["path"].partition("/")
        return rest if head == self.name and rest else posixpath.basename(rec["path"])


def published_release(root: Path, entry: dict) -> Release:
    """The release a ``zoo publish`` mirror records for ``entry`` (its version, digest and signature
    file), so that a format made from a mirror carries them; an empty Release for a build folder."""
    from ..hub.release import version_dir
    from ..hub.signing import SIGNATURE_NAME

    rec = entry.get("release")
    if not rec:
        return Release()
    sig = root / version_dir(entry["model"], rec["version"]) / SIGNATURE_NAME
    return Release(rec["version"], rec["digest"], sig if sig.is_file() and not sig.is_symlink() else None)


def load_models(artifacts: str | os.PathLike, names=None, releases: dict[str, Release] | None = None,
                progress: Progress = quiet) -> list[ModelFiles]:
    """The models of the local folder ``artifacts`` (all, or ``names``), every file checked against
    the manifest (size, sha256, external data listed) before anything is made of them."""
    import onnx

    root = Path(artifacts).expanduser()
    if not root.is_dir():
        raise InputError(f"artifacts folder {root} does not exist")
    src, where, manifest, entries = read_artifacts(root, names, InputError)
    header = {k: v for k, v in manifest.items() if k != "models"}
    out = []
    for e in entries:
        for f in e["files"]:
            try:
                src.verify_local(f)
            except IntegrityError as err:
                raise IntegrityError(f"{err} ({where}); nothing was written") from None
        m = ModelFiles(src, header, e, (releases or {}).get(e["model"]) or published_release(root, e))
        for rec in m.models():
            external_data_files(m.read(rec), rec["path"], e)  # refused: data the manifest does not list
        fp32 = next((r for r in m.models() if r["path"] == e["model_path"]), m.models()[0])
        proto = onnx.load_from_string(m.read(fp32))
        m.meta = {p.key: p.value for p in proto.metadata_props}
        m.domain, m.doc_string, m.model_version = proto.domain, proto.doc_string, int(proto.model_version)
        progress(f"{e['model']}: {len(e['files'])} file(s) verified")
        out.append(m)
    return out


def relocate(model: bytes, location: str) -> bytes:
    """The model file's bytes with every external tensor pointing at ``location`` (the same
    offsets): how a format that names data files differently keeps the data file's bytes."""
    import onnx

    from ..onnxio import iter_tensors

    proto = onnx.load_from_string(model)
    for t in iter_tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for kv in t.external_data:
                if kv.key == "location":
                    kv.value = location
    return proto.SerializeToString(deterministic=True)


@dataclass
class Planned:
    """One file of an output folder: copied from ``source`` (checked against ``rec`` while copied),
    or written from ``data``."""

    path: str
    rec: dict | None = None
    source: Path | None = None
    data: bytes | None = None


def write_files(to: Path, folder: str, planned: list[Planned], what: str) -> list[dict]:
    """Write ``planned`` below ``to/folder`` (created), each file through a temporary name,
    following no link below ``to`` (the folder the user named): a link planted at ``to/folder``
    is refused, never written through. Files already there with the same bytes are left alone.
    Returns one row per file: path, bytes, sha256, status."""
    from ..fsutil import sha256_bytes

    rows = []
    with Dir.open_root(to, what, create=True) as top, top.sub(folder, create=True) as out:
        for p in planned:
            if p.data is not None:
                rec = {"path": p.path, "bytes": len(p.data), "sha256": sha256_bytes(p.data)}
                same = out.matches(p.path, rec)
                if not same:
                    folder, _, name = p.path.rpartition("/")
                    d = out.sub(folder, create=True) if folder else out
                    try:
                        d.write_atomic(name, p.data, tag="export")
                    finally:
                        if d is not out:
                            d.close()
            else:
                rec = dict(p.rec, path=p.path)
                same = out.matches(p.path, rec)
                if not same:
                    with open(p.source, "rb") as fh:
                        copy_verified(fh, out, p.path, rec, tag="export")
            rows.append({"path": p.path, "bytes": rec["bytes"], "sha256": rec["sha256"],
                         "status": "unchanged" if same else "written"})
    return rows


def json_bytes(obj) -> bytes:
    from ..jsonio import dumps

    return (dumps(obj) + "\n").encode()


def release_files(root: Path, entry: dict) -> tuple[int, list[tuple[str, bytes]]] | None:
    """What a TUF client needs for ``entry``'s version, from the mirror ``root``: every
    ``metadata/N.root.json``, ``metadata/timestamp.json``, the current snapshot and targets, and the
    version's ``manifest.json``, ``model.sig`` and verification records (those the targets list); with the timestamp's
    version. None for a folder without TUF metadata (a build, an unsigned copy)."""
    from ..hub import repo
    from ..hub.paths import Dir
    from ..hub.release import version_dir
    from ..hub.signing import SIGNATURE_NAME

    with Dir.open_root(root, f"artifacts {root}") as out:
        st = repo.read_state(out)
        if st is None or st.timestamp is None:
            return None
        names = [repo.meta_name("root", md.signed.version) for md in st.roots]
        names.append(repo.meta_name("timestamp"))
        names.append(repo.meta_name("snapshot", st.timestamp.signed.snapshot_meta.version))
        names.append(repo.meta_name("targets", st.targets.signed.version))
        rec = entry.get("release") or {}
        if isinstance(rec.get("version"), int):
            vdir = version_dir(entry["model"], rec["version"])
            listed = st.targets.signed.targets
            names += [p for p in (f"{vdir}/manifest.json", f"{vdir}/{SIGNATURE_NAME}") if p in listed]
            names += sorted(p for p in listed if p.startswith(f"{vdir}/records/"))  # signed verification records
        return st.timestamp.signed.version, [(n, out.read_bytes(n, repo.MAX_METADATA_BYTES)) for n in names]
