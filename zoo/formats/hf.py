"""A Hugging Face model repository folder per model, that is also a zoo mirror.

``DIR/<name>/`` holds what Optimum and transformers.js look for (``onnx/model.onnx``,
``onnx/model_quantized.onnx``, ...; external data as ``<file>.onnx_data``), ``config.json``, the
weights as ``model.safetensors`` when the build has them, the ONNX test data, a model card
``README.md``, and a ``manifest.json`` that lists every file under its Hub name, so
``zoo pull NAME --from https://huggingface.co/ORG/REPO/resolve/COMMIT/`` verifies what it downloads.
``hf upload ORG/REPO DIR/<name>`` (huggingface_hub's command line) publishes the folder unchanged.
One repository per model: with several models, ``repo_id`` is a pattern such as ``me/{name}``.

Exported from a signed mirror (``zoo publish`` with keys), the folder is also a signed mirror of
that model's latest version: the mirror's TUF metadata (``metadata/``: every root, the timestamp,
the current snapshot and targets), the version's ``releases/NAME/V/manifest.json`` and
``model.sig``, and its files under their content addresses (``blobs/sha256/..``: the bytes the
signature covers; the Hub stores a file and its identical blob once). So
``zoo pull NAME --from <folder or its resolve/COMMIT/ URL> --trust root.json`` verifies it as on the
mirror: python-tuf, the model signature, every file's sha256.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError
from ..fsutil import sha256_bytes
from ..hub.config import Progress, quiet
from ..spec import EXTERNAL_ROLE
from .common import ModelFiles, Planned, Release, json_bytes, load_models, release_files, relocate, write_files
from .names import HF_ROLE_FILES, hf_data_file, hf_model_file

SIGNATURE_FILE = "zoo-release.sig"  # the release's signature, as the releases work made it
NAME_FIELD = "{name}"  # in a repo id: the model's name (one Hub repository per model)


def repo_ids(repo_id: str | None, names: list[str]) -> dict[str, str | None]:
    """The Hub repository of each model: ``repo_id`` with ``{name}`` replaced by the model's name.
    A plain id names one repository, so it is refused for several models (each card would tell
    users to pull every model from the same repository)."""
    if repo_id is None:
        return dict.fromkeys(names)
    if NAME_FIELD not in repo_id and len(names) > 1:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        org = repo_id.split("/")[0] if "/" in repo_id else "ORG"
        raise InputError(f"--repo-id {repo_id} names one Hub repository, but {len(names)} models are exported "
                         f"({shown}): name one model, or give a pattern with {NAME_FIELD}, e.g. "
                         f"--repo-id '{org}/{NAME_FIELD}'")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    out = {}
    for n in names:
        rid = repo_id.replace(NAME_FIELD, n)
        try:
            validate_repo_id(rid)
        except HFValidationError as e:
            raise InputError(f"--repo-id {repo_id}: {rid!r} is not a Hub repository id ({e})") from None
        out[n] = rid
    return out


def _names(artifacts, names) -> list[str] | None:
    """The models an export will write, from the manifest alone (nothing hashed yet); None when
    the folder cannot say (load_models then says why)."""
    if names:
        return list(dict.fromkeys(names))
    from ..hub.publish import read_artifacts

    root = Path(artifacts).expanduser()
    if not root.is_dir():
        return None
    return [e["model"] for e in read_artifacts(root, None, InputError)[3]]


def hf_path(m: ModelFiles, rec: dict) -> str:
    """The Hub name of one file of the zoo's layout (names.py holds the table)."""
    role = rec["role"]
    if role == "model":
        return hf_model_file(rec["precision"])
    if role == EXTERNAL_ROLE:
        of = next(f for f in m.entry["files"] if f["path"] == rec["of"])
        return hf_data_file(hf_model_file(of["precision"]))
    if role in HF_ROLE_FILES:
        return HF_ROLE_FILES[role]
    return m.relative(rec)  # test data: test_data_set_0/input_0.pb


def plan(m: ModelFiles) -> tuple[list[Planned], dict]:
    """The files of the repository folder (card and config aside) and its mirror manifest entry."""
    planned, records = [], []
    for rec in m.entry["files"]:
        path = hf_path(m, rec)
        data_rec = m.data_of(rec) if rec["role"] == "model" else None
        if data_rec is not None:  # the model file names its data file: point it at the Hub name
            data = relocate(m.read(rec), Path(hf_data_file(path)).name)
            planned.append(Planned(path, data=data))
            new = dict(rec, path=path, bytes=len(data), sha256=sha256_bytes(data))
        else:
            planned.append(Planned(path, rec=rec, source=m.local(rec)))
            new = dict(rec, path=path)
        if rec["role"] == EXTERNAL_ROLE:
            new["of"] = hf_model_file(next(f for f in m.entry["files"] if f["path"] == rec["of"])["precision"])
        records.append(new)
    entry = copy.deepcopy(m.entry)
    entry["files"] = records
    entry["model_path"] = hf_path(m, next(f for f in m.entry["files"] if f["path"] == m.entry["model_path"]))
    main = next(f for f in records if f["path"] == entry["model_path"])
    entry["metadata"] = dict(entry["metadata"], model_sha=main["sha256"], model_bytes=main["bytes"])
    entry["test_data"] = dict(entry["test_data"], sets=[s.partition("/")[2] or s for s in entry["test_data"]["sets"]])
    return planned, entry


def signed_mirror(m: ModelFiles) -> list[Planned]:
    """From a signed mirror: the version's blobs, its release files, and the TUF metadata (the
    timestamp last: a reader sees the version only when all it names is in place); else nothing."""
    from ..hub.release import blob_path

    found = release_files(m.src.root, m.entry) if m.release.version is not None else None
    if found is None or not any(p.endswith("/" + mf.MANIFEST_NAME) for p, _ in found[1]):
        return []
    blobs = {blob_path(f["sha256"]): f for f in m.entry["files"]}
    out = [Planned(p, rec=f, source=m.local(f)) for p, f in sorted(blobs.items())]
    files = sorted(found[1], key=lambda pd: pd[0].endswith("/timestamp.json"))
    return out + [Planned(p, data=d) for p, d in files]


def config_json(m: ModelFiles, entry: dict) -> dict:
    """``config.json``: what a loader needs to feed the model and read its output."""
    n = m.entry["num_classes"]
    labels = m.labels or [f"LABEL_{i}" for i in range(n)]
    ports = m.entry["metadata"]["io_ports"]
    return {
        "model_type": m.entry["family"],
        "architectures": ["DenseEfficientNet"],
        "name": m.name,
        "flavor": m.entry["flavor"],
        "input_dim": m.entry["scaling"]["input_dim"],
        "num_classes": n,
        "id2label": {str(i): lab for i, lab in enumerate(labels)},
        "label2id": {lab: i for i, lab in enumerate(labels)},
        "scaling": m.entry["scaling"],
        "params": m.entry["params"],
        "flops": m.entry["flops"],
        "onnx": {
            "input_name": ports["inputs"][0]["name"], "output_name": ports["outputs"][0]["name"],
            "opset": m.entry["opset_version"],
            "files": {f["precision"]: f["path"] for f in entry["files"] if f["role"] == "model"},
        },
        "zoo": {"version": m.version, "digest": m.digest, "manifest": mf.MANIFEST_NAME,
                "signature": SIGNATURE_FILE if m.release.signature else None},
    }


def export_hf(artifacts: str | os.PathLike, to: str | os.PathLike, names=None, *,
              releases: dict[str, Release] | None = None, repo_id: str | None = None,
              progress: Progress = quiet) -> list[dict]:
    """Write ``to/<name>/`` for each model of ``artifacts`` (all, or ``names``). ``releases`` gives
    a model's version, digest and signature (else the model file's version and sha256); ``repo_id``
    (``ORG/REPO``, or a pattern such as ``ORG/{name}``; a plain id only for one model) is used in
    the card's instructions. Returns one row per file written."""
    from .hf_card import _hub, model_card

    # The cheap checks first, before any model file is hashed: the optional package (a missing one
    # is exit 3, naming the extra), the destination, the repository ids.
    _hub()
    if to in (None, ""):
        raise InputError("a Hugging Face export needs a destination folder (--to DIR)")
    dest = Path(to).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--to {dest} is not a folder")
    listed = _names(artifacts, names)
    ids = repo_ids(repo_id, listed) if listed is not None else {}
    rows = []
    for m in load_models(artifacts, names, releases, progress):
        planned, entry = plan(m)
        manifest = dict(m.header, models=[entry])
        mf.validate(manifest, f"{dest / m.name / mf.MANIFEST_NAME}")
        release_files_planned = signed_mirror(m)
        config = config_json(m, entry)
        if release_files_planned:  # the folder is a signed mirror too: the card says how to verify it
            config["zoo"]["tuf_metadata"] = "metadata/"
        planned.append(Planned("config.json", data=json_bytes(config)))
        planned.append(Planned("README.md", data=model_card(m, entry, config, ids.get(m.name)).encode()))
        if m.release.signature is not None:
            sig = Path(m.release.signature)
            if not sig.is_file():
                raise InputError(f"signature file {sig} does not exist")
            planned.append(Planned(SIGNATURE_FILE, data=sig.read_bytes()))
        planned += release_files_planned
        planned.append(Planned(mf.MANIFEST_NAME, data=json_bytes(manifest)))  # last: a mirror is complete
        rows += [dict(r, model=m.name) for r in write_files(dest, m.name, planned, f"--to {dest}")]
        progress(f"{m.name}: Hugging Face folder {dest / m.name}")
    return rows
