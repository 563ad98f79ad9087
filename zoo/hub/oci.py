"""Reading models from an OCI registry: ``zoo pull NAME --from oci://HOST[:PORT]/REPO``.

The same URL both ways: ``zoo publish --to oci://HOST/REPO`` pushes each model version to the
repository ``REPO/NAME`` (tags: the version and ``latest``), and ``--from oci://HOST/REPO`` reads
``REPO/NAME`` for each name asked for (``NAME`` -> tag ``latest``, ``NAME@V`` -> tag ``V``,
``NAME@sha256:...`` -> checked after reading). The older form
``--from oci://HOST/REPO/NAME[:TAG|@sha256:OCI_DIGEST]`` names one model artifact and still works.
A registry has no listing the zoo may rely on, so a namespace needs the models named.

:class:`OciSource` is a source like a folder or a server (``read_small``, ``fetch_into``): the
hub's pull runs unchanged over it. When the model was published from a signed mirror, a release
artifact refers to it (OCI 1.1 ``subject``; found by the referrers API, else by the fallback tag
``sha256-<hex>`` of the distribution spec): its layers are the mirror's TUF metadata and the
version's ``manifest.json`` and ``model.sig``, served under their mirror paths, so python-tuf,
the model signature and every layer digest are checked exactly as on a mirror.

Every request shares the pull's deadline (a watchdog shuts its sockets down when it passes), is
bounded in size, and becomes one line on failure, naming no credential.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..errors import InputError, ManifestError, cut
from . import config
from .config import IntegrityError, Progress, SourceError, UnknownModelError, quiet
from .paths import safe_relpath
from .ociregistry import (
    _BLOB,
    _DIGEST,
    LATEST,
    MAX_REFERRERS,
    OCI_INDEX,
    RELEASE_ARTIFACT,
    SCHEME,
    TIMESTAMP_ANNOTATION,
    OciNotFound,
    OciRef,
    RegistryClient,
    fallback_tag,
    parse_json,
    parse_oci_manifest,
    referrers_mode,
)


@dataclass
class _Artifact:
    """One model manifest in the registry: where (repository, reference), its digest, its layers
    by title, and (read when asked) its newest release referrer's layers."""

    ref: OciRef
    digest: str
    layers: dict[str, dict]
    release: dict[str, dict] | None = None
    release_version: int = -1  # the TUF timestamp version the release referrer carries


class OciSource:
    """A source for the hub's pull (``--from oci://HOST[:PORT]/REPO[/NAME][:TAG|@DIGEST]``).

    ``select(names)`` (called by the pull with what was asked) says which repositories to read;
    ``read_small`` serves ``manifest.json`` (the model artifacts' own), ``metadata/...`` (the newest
    release referrer's TUF metadata) and ``releases/NAME/V/...`` (the version's release referrer);
    ``fetch_into`` streams a layer (by its title, or for ``blobs/sha256/..`` by its digest), each
    checked against the layer digest and the zoo's size and sha256.
    """

    remote = True
    root = None
    credentials = None
    versions_by_tag = True  # NAME@V is the tag V (unverified without a trust anchor, as any plain read)

    def __init__(self, spec: str):
        self.ref = OciRef.parse(spec)
        # What trust is bound to: the registry and repository, never a tag or a digest.
        self.url = self.identity = f"{SCHEME}{self.ref.host}/{self.ref.repository}/"
        self._client = RegistryClient(self.ref)
        self._wanted: list[tuple[str | None, object]] = [(None, None)]
        self._arts: dict[tuple[str, str], _Artifact] = {}
        self._by_digest: dict[str, tuple[OciRef, dict]] = {}

    def __str__(self) -> str:
        return str(self.ref)

    shown = property(__str__)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    @property
    def pinned(self) -> bool:
        """The URL names one artifact (a tag or a digest): the older form."""
        return bool(self.ref.tag or self.ref.digest)

    def _where(self, rel: str) -> str:
        return cut(f"{self.url}{rel}")

    # ----------------------------------------------------------------------------------------------
    # What was asked

    def select(self, names) -> None:
        """The models this pull reads: ``NAME``, ``NAME@V``, ``NAME@sha256:...`` (None: the
        URL's own artifact, which a namespace does not have: then the models must be named)."""
        from .release import parse_ref

        self._wanted = [(None, None)] if not names else [parse_ref(n) for n in names]

    def _candidates(self, name: str | None, tag: str | None) -> list[OciRef]:
        r = self.ref
        if self.pinned and tag is None:
            return [r]
        if name is None:
            return [OciRef(r.host, r.repository, tag)]
        out = [OciRef(r.host, f"{r.repository}/{name}", tag)]
        if r.repository.rsplit("/", 1)[-1] == name:  # the older form: the URL is the model's repository
            out.insert(0, OciRef(r.host, r.repository, tag))
        return out

    def _artifact(self, name: str | None, tag: str | None, budget) -> _Artifact:
        """The model manifest of ``name`` (at ``tag``, else the URL's reference or ``latest``)."""
        tried = []
        for ref in self._candidates(name, tag):
            key = (ref.repository, ref.reference)
            if key in self._arts:
                return self._arts[key]
            try:
                art = self._read_artifact(ref, budget)
            except OciNotFound:
                tried.append(ref)
                continue
            self._arts[key] = art
            for layer in art.layers.values():
                self._by_digest.setdefault(layer["digest"], (ref, layer))
            return art
        shown = f"{tried[0]}" if tried[0].digest else f"{tried[0]}:{tried[0].reference}" if not tried[0].tag \
            else str(tried[0])
        if name is None and not self.pinned:
            raise InputError(f"{self.ref} is not a model artifact (HTTP 404 for {LATEST}); name the models: "
                             f"zoo pull NAME --from {self.ref} reads {self.ref.repository}/NAME (an OCI registry "
                             "has no listing the zoo relies on, so --all cannot list a namespace)")
        repo = tried[0].repository
        raise UnknownModelError(f"{shown} does not exist (HTTP 404): published versions are tags of {repo} "
                                f"(zoo publish --to {SCHEME}{self.ref.host}/{self.ref.repository})")

    def _read_artifact(self, ref: OciRef, budget) -> _Artifact:
        raw, digest = self._client.manifest("the OCI manifest", ref, ref.reference, budget, expect=ref.digest)
        return _Artifact(ref, digest, parse_oci_manifest(raw, str(ref)))

    # ----------------------------------------------------------------------------------------------
    # Release referrers

    def _release(self, art: _Artifact, budget) -> dict[str, dict]:
        """The layers of the newest release artifact that refers to ``art`` (empty: none)."""
        if art.release is not None:
            return art.release
        descs = self._referrers(art, budget)
        art.release = {}
        best = None
        for d in descs:
            if not isinstance(d, dict):
                continue
            ann = d.get("annotations")
            v = ann.get(TIMESTAMP_ANNOTATION) if isinstance(ann, dict) else None
            if d.get("artifactType") != RELEASE_ARTIFACT or not isinstance(v, str) or not v.isdigit() or len(v) > 12 \
                    or not isinstance(d.get("digest"), str) or not _DIGEST.match(d["digest"]):
                continue
            if best is None or int(v) > best[0]:
                best = (int(v), d["digest"])
        if best is not None:
            ref = OciRef(art.ref.host, art.ref.repository, digest=best[1])
            raw, _ = self._client.manifest("the release artifact", ref, best[1], budget, expect=best[1])
            art.release = {path: dict(layer, _ref=ref) for path, layer in parse_oci_manifest(raw, str(ref)).items()}
            art.release_version = best[0]
        return art.release

    def _referrers(self, art: _Artifact, budget) -> list:
        """Descriptors of what refers to ``art``: the referrers API's; where it has none (404, or
        no release listed: a registry upgraded since, ``ZOO_OCI_REFERRERS=tag``), the image index at
        the fallback tag ``sha256-<hex>``."""
        ref = art.ref
        if referrers_mode() != "tag":
            try:
                found = self._index(self._client.get("the referrers list", ref, self._client.referrers_url(ref, art.digest),
                                                     config.MAX_MANIFEST_BYTES, accept=OCI_INDEX, budget=budget), art)
                if any(isinstance(d, dict) and d.get("artifactType") == RELEASE_ARTIFACT for d in found):
                    return found
            except SourceError as e:  # 404 as the spec says; 400, 405, 501 from registries that predate it
                if getattr(e, "status", None) not in (400, 404, 405, 501):
                    raise
        try:
            raw = self._client.get("the referrers tag", ref, self._client.manifest_url(ref, fallback_tag(art.digest)),
                                   config.MAX_MANIFEST_BYTES, accept=OCI_INDEX, budget=budget)
        except OciNotFound:
            return []
        return self._index(raw, art)

    def _index(self, raw: bytes, art: _Artifact) -> list:
        index = parse_json(raw, f"{art.ref} referrers of {art.digest[:19]}...")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise IntegrityError(f"{art.ref}: the referrers of {art.digest[:19]}... are not an image index; rejected")
        return manifests[-MAX_REFERRERS:]

    def _newest_release(self, budget) -> dict[str, dict]:
        """The release files of the newest release referrer among the models asked for (at
        ``latest`` and at each version asked for): the newest metadata is what TUF wants."""
        best: tuple[int, dict] = (-1, {})
        for name, spec in self._wanted:
            tags = [None] if not isinstance(spec, int) else [None, str(spec)]
            for tag in tags:
                try:
                    art = self._artifact(name, tag, budget)
                except UnknownModelError:
                    if tag is None and isinstance(spec, int):
                        continue  # no `latest`, a version by its tag: fine
                    raise
                files = self._release(art, budget)
                if files and art.release_version > best[0]:
                    best = (art.release_version, files)
        return best[1]

    def _version_release(self, name: str, version: str, rel: str, budget) -> tuple[OciRef, dict] | None:
        """A version's release file: from the release referrer of ``latest`` (the newest names the
        latest version's files), else of the version's own tag."""
        own = self._wanted == [(None, None)]  # the URL's own artifact: the older form
        for tag in (None, version):
            try:
                art = self._artifact(None if own else name, tag, budget)
            except UnknownModelError:
                continue
            layer = self._release(art, budget).get(rel)
            if layer is not None:
                return layer["_ref"], layer
        return None

    # ----------------------------------------------------------------------------------------------
    # The source interface

    def _locate(self, rel: str, budget) -> tuple[OciRef, dict] | None:
        from ..builder import manifest as mf
        from .release import RELEASES
        from .repo import METADATA

        rel = safe_relpath(rel, f"{self} path")
        if rel.startswith(METADATA + "/"):
            layer = self._newest_release(budget).get(rel)
            return (layer["_ref"], layer) if layer is not None else None
        parts = rel.split("/")
        if parts[0] == RELEASES and len(parts) in (4, 5) and parts[2].isdigit():
            return self._version_release(parts[1], parts[2], rel, budget)
        m = _BLOB.match(rel)
        if m:
            found = self._by_digest.get(f"sha256:{m.group(2)}")
            if found is None:
                for name, spec in self._wanted:  # a version not read yet: its tag
                    self._artifact(name, str(spec) if isinstance(spec, int) else None, budget)
                found = self._by_digest.get(f"sha256:{m.group(2)}")
            return found
        if rel == mf.MANIFEST_NAME:
            return None  # read_small builds it
        for name, spec in self._wanted:
            art = self._artifact(name, str(spec) if isinstance(spec, int) else None, budget)
            if rel in art.layers:
                return art.ref, art.layers[rel]
        return None

    def read_small(self, rel: str, limit: int, progress: Progress = quiet, budget=None) -> bytes:
        """A small file: ``manifest.json``, TUF metadata, a version's release file. A file the
        registry does not hold raises :class:`OciNotFound` ("HTTP 404")."""
        from ..builder import manifest as mf

        if rel == mf.MANIFEST_NAME:
            return self._manifest_bytes(limit, budget)
        found = self._locate(rel, budget)
        if found is None:
            raise OciNotFound(f"{self._where(rel)}: not in the registry (HTTP 404)")
        ref, layer = found
        if layer["size"] > limit:
            raise ManifestError(f"{self._where(rel)}: larger than {limit:,} bytes; refusing it")
        return self._client.blob(ref, layer, rel, layer["size"], budget=budget)

    def _manifest_bytes(self, limit: int, budget) -> bytes:
        """The models' own ``manifest.json`` layers (one per model asked for), as one manifest."""
        from ..builder import manifest as mf

        docs = []
        for name, spec in self._wanted:
            art = self._artifact(name, str(spec) if isinstance(spec, int) else None, budget)
            layer = art.layers.get(mf.MANIFEST_NAME)
            if layer is None:
                raise IntegrityError(f"{art.ref}: the artifact has no {mf.MANIFEST_NAME} layer; not a zoo model "
                                     "artifact")
            if layer["size"] > limit:
                raise ManifestError(f"{art.ref} {mf.MANIFEST_NAME}: larger than {limit:,} bytes; refusing it")
            docs.append(self._client.blob(art.ref, layer, mf.MANIFEST_NAME, layer["size"], budget=budget))
        if len(docs) == 1:
            return docs[0]
        merged = None
        for raw in docs:
            doc = parse_json(raw, f"{self} {mf.MANIFEST_NAME}")
            if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
                raise ManifestError(f"{self} {mf.MANIFEST_NAME}: not a zoo manifest")
            if merged is None:
                merged = doc
            else:
                merged["models"] += doc["models"]
        return json.dumps(merged, sort_keys=True).encode()

    def read_manifest(self, progress: Progress = quiet, budget=None) -> dict:
        from ..builder import manifest as mf
        from .source import parse_manifest

        return parse_manifest(self.read_small(mf.MANIFEST_NAME, config.MAX_MANIFEST_BYTES, progress, budget),
                              f"{self} {mf.MANIFEST_NAME}")

    def fetch_into(self, rec: dict, f, progress: Progress = quiet, budget=None) -> None:
        """Write ``rec``'s layer into the open file ``f``; raise unless it matches both the layer
        digest and the zoo manifest's size and sha256."""
        found = self._locate(rec["path"], budget)
        if found is None:
            raise SourceError(f"{rec['path']} is listed in the manifest but not a layer of {self}")
        ref, layer = found
        if layer["digest"] != f"sha256:{rec['sha256']}" or layer["size"] != rec["bytes"]:
            raise IntegrityError(f"{rec['path']}: the OCI manifest and the zoo manifest of {self} disagree; rejected")
        f.seek(0)
        f.truncate()
        self._client.blob(ref, layer, rec["path"], rec["bytes"], sink=f.write, budget=budget)


__all__ = ["OciSource"]
