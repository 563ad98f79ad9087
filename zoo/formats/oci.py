"""Models as OCI artifacts in any registry, through the ``oras`` client (PyPI ``oras``): the
writing side (``zoo publish --to oci://...``); reading is the hub's (:mod:`zoo.hub.oci`).

``zoo publish --to oci://HOST[:PORT]/REPO`` pushes each model version to ``REPO/<name>`` as one
OCI image manifest (``artifactType`` and media types after the CNCF ModelPack spec): one layer per
file of the model (titled with its zoo path, so ``oras pull`` writes a zoo mirror), a layer with the
model's ``manifest.json``, and a ModelPack config. It is tagged with the version and ``latest`` and
referenced by its digest. ``zoo pull NAME --from oci://HOST[:PORT]/REPO`` (the same URL) reads it.

Published from a signed mirror (``--artifacts MIRROR`` with ``metadata/``), each model manifest
also gets a release artifact that refers to it (OCI 1.1: ``subject`` = the model manifest,
``artifactType`` :data:`~zoo.hub.ociregistry.RELEASE_ARTIFACT`, the TUF timestamp version as an
annotation): its layers are the mirror's TUF metadata (every root, the timestamp, the current
snapshot and targets) and the version's ``releases/NAME/V/manifest.json`` and ``model.sig``, each
titled with its mirror path. A registry that indexes ``subject`` (it answers ``OCI-Subject``)
lists it through the referrers API; for one that does not (CNCF Distribution 2.x), the fallback
tag ``sha256-<hex>`` of the subject holds an image index of its referrers (``ZOO_OCI_REFERRERS=tag``
always writes and reads that tag).

Credentials come from the Docker config (``~/.docker/config.json``, ``$DOCKER_CONFIG``) as the
``oras`` client reads it, or from ``ZOO_OCI_USERNAME`` / ``ZOO_OCI_PASSWORD``; they are never
printed. ``localhost``/``127.*`` registries are spoken to over plain http, others over https
(``ZOO_OCI_PLAIN_HTTP=1`` forces http).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ..errors import InputError, ManifestError
from ..hub.config import MAX_MANIFEST_BYTES, Progress, quiet
from ..hub.ociregistry import (
    EMPTY_DESCRIPTOR,
    LATEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RELEASE_ARTIFACT,
    TIMESTAMP_ANNOTATION,
    OciNotFound,
    OciRef,
    _call,
    fallback_tag,
    parse_json,
    referrers_mode,
    registry,
)
from .common import Release, load_models, release_files
from .names import (MODELPACK_ARTIFACT, MODELPACK_CONFIG, MODELPACK_FILEPATH, MODELPACK_ROLE_MEDIA, OCI_TITLE,
                    PRECISION_NAMES)

SIGNATURE_MEDIA = "application/vnd.dev.sigstore.bundle.v0.3+json"
TUF_MEDIA = "application/vnd.tuf.metadata.v1+json"  # a layer of a release artifact: one TUF metadata file


def _config_blob(m) -> bytes:
    """The ModelPack config: what the model is, its format, precision and license."""
    from ..modelinfo import AUTHOR_KEY, LICENSE_KEY

    precisions = [f["precision"] for f in m.models()]
    main = PRECISION_NAMES[precisions[0]]
    return json.dumps({
        "descriptor": {"name": m.name, "version": str(m.version), "family": m.entry["family"],
                       **({"authors": [m.meta[AUTHOR_KEY]]} if AUTHOR_KEY in m.meta else {}),
                       **({"licenses": [m.meta[LICENSE_KEY]]} if LICENSE_KEY in m.meta else {}),
                       "description": m.doc_string},
        "config": {"architecture": "dense-efficientnet", "format": "onnx", "paramSize": str(m.entry["params"]),
                   "precision": main.modelpack_precision,
                   **({"quantization": main.quantization} if main.quantization else {})},
        "modelfs": {"type": "layers", "diffIds": [f"sha256:{f['sha256']}" for f in m.entry["files"]]},
    }, sort_keys=True, separators=(",", ":")).encode()


def _annotations(m) -> dict[str, str]:
    from ..modelinfo import AUTHOR_KEY, LICENSE_KEY

    out = {"org.opencontainers.image.title": m.name, "org.opencontainers.image.version": str(m.version),
           "org.opencontainers.image.description": m.doc_string, "org.zoo.digest": m.digest,
           "org.zoo.model_sha": m.entry["metadata"]["model_sha"], "org.zoo.domain": m.domain}
    if LICENSE_KEY in m.meta:
        out["org.opencontainers.image.licenses"] = m.meta[LICENSE_KEY]
    if AUTHOR_KEY in m.meta:
        out["org.opencontainers.image.authors"] = m.meta[AUTHOR_KEY]
    if m.labels is not None:
        out["org.zoo.labels"] = json.dumps(m.labels, separators=(",", ":"))
    return out


def _layer(path: str, data_or_rec, media: str, extra: dict | None = None) -> dict:
    if isinstance(data_or_rec, (bytes, bytearray)):
        digest, size = hashlib.sha256(data_or_rec).hexdigest(), len(data_or_rec)
    else:
        digest, size = data_or_rec["sha256"], data_or_rec["bytes"]
    return {"mediaType": media, "digest": f"sha256:{digest}", "size": size,
            "annotations": {OCI_TITLE: path, MODELPACK_FILEPATH: path, **(extra or {})}}


def _put_manifest(reg, target: OciRef, reference: str, raw: bytes, media: str, what: str):
    """PUT a manifest's exact bytes (so its digest and size are known before the registry answers)."""
    url = f"{reg.prefix}://{target.host}/v2/{target.repository}/manifests/{reference}"
    return _call(what, target, reg.do_request, url, "PUT", data=raw, headers={"Content-Type": media})


def _manifest_raw(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def _push_release(reg, target: OciRef, container, subject: dict, ts_version: int, files, upload,
                  progress: Progress) -> dict:
    """Push the release artifact that refers to ``subject`` (the model manifest's descriptor); index
    it under the fallback tag unless the registry says it indexes ``subject`` itself."""
    upload("config", EMPTY_DESCRIPTOR, data=b"{}")
    layers = []
    for path, data in files:
        media = TUF_MEDIA if path.startswith("metadata/") else (
            SIGNATURE_MEDIA if path.endswith("/model.sig") else MODELPACK_ROLE_MEDIA["manifest"])
        layers.append({"mediaType": media, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
                       "size": len(data), "annotations": {OCI_TITLE: path}})
        upload(path, layers[-1], data=data)
    annotations = {TIMESTAMP_ANNOTATION: str(ts_version), "org.opencontainers.image.title": "zoo release metadata"}
    raw = _manifest_raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": RELEASE_ARTIFACT,
                         "config": EMPTY_DESCRIPTOR, "layers": layers, "subject": subject,
                         "annotations": annotations})
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    resp = _put_manifest(reg, target, digest, raw, OCI_MANIFEST, "release artifact upload")
    desc = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw), "artifactType": RELEASE_ARTIFACT,
            "annotations": annotations}
    if resp.headers.get("OCI-Subject") == subject["digest"] and referrers_mode() != "tag":
        return {"digest": digest, "via": "referrers"}
    # The distribution spec 1.1's fallback: an image index of the subject's referrers at sha256-<hex>.
    tag = fallback_tag(subject["digest"])
    url = f"{reg.prefix}://{target.host}/v2/{target.repository}/manifests/{tag}"
    try:
        resp = _call("referrers tag read", target, reg.do_request, url, "GET", headers={"Accept": OCI_INDEX})
        index = parse_json(resp.content[:MAX_MANIFEST_BYTES + 1], f"{target}:{tag}")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ValueError("not an image index")
    except OciNotFound:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    except (ValueError, ManifestError):
        raise InputError(f"{target}: the tag {tag} holds something other than an image index of referrers; "
                         "remove it") from None
    if not any(isinstance(d, dict) and d.get("digest") == digest for d in index["manifests"]):
        index["manifests"].append(desc)
    _put_manifest(reg, target, tag, _manifest_raw(index), OCI_INDEX, "referrers tag upload")
    progress(f"{target.repository}: release metadata (timestamp {ts_version}) under the referrers tag {tag}")
    return {"digest": digest, "via": "tag"}


def push(artifacts, to: str, names=None, *, releases: dict[str, Release] | None = None,
         progress: Progress = quiet) -> list[dict]:
    """Push each model of ``artifacts`` to ``<to>/<name>``, tagged with its version and ``latest``;
    from a signed mirror, each with its release artifact (TUF metadata, release files) referring to
    it. Returns one row per model: name, version, reference (by digest), digest, layers, release."""
    from ..builder import manifest as mf
    from .common import json_bytes

    ref = OciRef.parse(to)
    if ref.tag or ref.digest:
        raise InputError(f"{ref}: publish to a repository (oci://HOST/REPO); each model goes to REPO/NAME, "
                         "tagged with its version")
    reg = registry(ref)
    rows = []
    for m in load_models(artifacts, names, releases, progress):
        target = OciRef(ref.host, f"{ref.repository}/{m.name}", str(m.version))
        container = reg.get_container(f"{target.host}/{target.repository}:{target.tag}")
        reg.auth.load_configs(container)
        rel_files = release_files(m.src.root, m.entry)
        layers = []
        with tempfile.TemporaryDirectory(prefix="zoo-oci-") as tmp:
            def upload(path: str, layer: dict, local: str | None = None, data: bytes | None = None):
                if local is None:
                    local = os.path.join(tmp, hashlib.sha256(path.encode()).hexdigest())
                    with open(local, "wb") as f:
                        f.write(data)
                _call(f"upload of {path}", target, reg.upload_blob, local, container, layer)

            for rec in m.entry["files"]:
                layer = _layer(rec["path"], rec, MODELPACK_ROLE_MEDIA[rec["role"]],
                               {"org.zoo.role": rec["role"], "org.zoo.precision": rec["precision"]})
                upload(rec["path"], layer, local=str(m.local(rec)))  # the registry checks the digest
                layers.append(layer)
            own = json_bytes(dict(m.header, models=[m.entry]))
            layers.append(_layer(mf.MANIFEST_NAME, own, MODELPACK_ROLE_MEDIA["manifest"]))
            upload(mf.MANIFEST_NAME, layers[-1], data=own)
            if m.release.signature is not None:
                sig = open(m.release.signature, "rb").read()
                layers.append(_layer("model.sig", sig, SIGNATURE_MEDIA))
                upload("model.sig", layers[-1], data=sig)
            conf = _config_blob(m)
            conf_desc = {"mediaType": MODELPACK_CONFIG, "digest": f"sha256:{hashlib.sha256(conf).hexdigest()}",
                         "size": len(conf)}
            upload("config", conf_desc, data=conf)
            raw = _manifest_raw({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": MODELPACK_ARTIFACT,
                                 "config": conf_desc, "layers": layers, "annotations": _annotations(m)})
            digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
            _put_manifest(reg, target, target.tag, raw, OCI_MANIFEST, "manifest upload")
            _put_manifest(reg, target, LATEST, raw, OCI_MANIFEST, "tag latest")
            release = None
            if rel_files is not None:
                subject = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw)}
                release = _push_release(reg, target, container, subject, rel_files[0], rel_files[1], upload, progress)
        by_digest = OciRef(ref.host, target.repository, digest=digest)
        rows.append({"model": m.name, "version": m.version, "tag": str(target), "reference": str(by_digest),
                     "digest": digest, "layers": len(layers), "release": release})
        progress(f"{m.name}: pushed {len(layers)} layer(s) to {target} ({digest[:19]}...)")
    return rows
