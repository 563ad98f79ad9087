"""Models as OCI artifacts in any registry, through the ``oras`` client (PyPI ``oras``).

``zoo publish --to oci://HOST[:PORT]/REPO`` pushes each model version to ``REPO/<name>`` as one
OCI image manifest (``artifactType`` and media types after the CNCF ModelPack spec): one layer per
file of the model (titled with its zoo path, so ``oras pull`` writes a zoo mirror), a layer with the
model's ``manifest.json``, and a ModelPack config. It is tagged with the version and ``latest`` and
referenced by its digest. ``zoo pull --from oci://HOST[:PORT]/REPO/<name>[:TAG|@sha256:...]``
reads it through :class:`OciSource`, which the hub's pull uses like any source: every layer is
checked against the OCI manifest's digest and the zoo manifest's sha256 before it is kept.

Credentials come from the Docker config (``~/.docker/config.json``, ``$DOCKER_CONFIG``) as the
``oras`` client reads it, or from ``ZOO_OCI_USERNAME`` / ``ZOO_OCI_PASSWORD``; they are never
printed. ``localhost``/``127.*`` registries are spoken to over plain http, others over https
(``ZOO_OCI_PLAIN_HTTP=1`` forces http).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass

from ..errors import InputError, cut
from ..hub import config
from ..hub.config import IntegrityError, Progress, SourceError, first_line, quiet
from ..hub.paths import safe_relpath
from .common import Release, load_models
from .names import (MODELPACK_ARTIFACT, MODELPACK_CONFIG, MODELPACK_FILEPATH, MODELPACK_ROLE_MEDIA, OCI_TITLE,
                    PRECISION_NAMES)

SCHEME = "oci://"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIGNATURE_MEDIA = "application/vnd.dev.sigstore.bundle.v0.3+json"
USER_ENV, PASSWORD_ENV, PLAIN_HTTP_ENV = "ZOO_OCI_USERNAME", "ZOO_OCI_PASSWORD", "ZOO_OCI_PLAIN_HTTP"
LATEST = "latest"
_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")  # distribution spec
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def is_oci(spec) -> bool:
    return isinstance(spec, str) and spec.lower().startswith(SCHEME)


@dataclass(frozen=True)
class OciRef:
    """``oci://HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]``, parsed and checked."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "OciRef":
        shown = cut(config.redact(spec), 200)
        rest = spec[len(SCHEME):]
        if "@" in rest.split("/", 1)[0]:
            raise InputError(f"{shown}: credentials do not go in the URL; use the Docker config or ${USER_ENV}")
        host, _, path = rest.partition("/")
        digest = tag = None
        if "@" in path:
            path, _, digest = path.partition("@")
            if not _DIGEST.match(digest):
                raise InputError(f"{shown}: a digest is sha256: and 64 lowercase hex digits")
        elif ":" in path.rsplit("/", 1)[-1]:
            path, _, tag = path.rpartition(":")
            if not _TAG.match(tag):
                raise InputError(f"{shown}: {tag!r} is not a valid tag")
        if not re.match(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$", host) or not path or not _NAME.match(path):
            raise InputError(f"{shown} is not oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] "
                             "(repository names are lowercase letters, digits, '.', '_', '-' and '/')")
        return cls(host, path, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or LATEST

    def __str__(self) -> str:
        return f"{SCHEME}{self.host}/{self.repository}" + (f"@{self.digest}" if self.digest else
                                                           f":{self.tag}" if self.tag else "")


def _plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return os.environ.get(PLAIN_HTTP_ENV) == "1" or name == "localhost" or name.startswith("127.")


def registry(ref: OciRef):
    """An ``oras`` registry client for ``ref``'s host: one attempt per request (the zoo bounds its
    own time), a timeout on every request, credentials from the environment or the Docker config."""
    import oras.provider

    class _Registry(oras.provider.Registry):
        # oras retries failures five times with sleeps of up to a minute; a pull must not hang.
        do_request = oras.provider.Registry.do_request.__wrapped__

    reg = _Registry(hostname=ref.host, insecure=_plain_http(ref.host))
    reg.session.request = functools.partial(reg.session.request, timeout=(config.TIMEOUT_S, config.speed_time()))
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user and password:
        reg.auth.set_basic_auth(user, password)
    return reg


def _call(what: str, ref: OciRef, fn, *args, **kwargs):
    """Run one registry request; its failure becomes one line that names no credential."""
    import requests

    try:
        resp = fn(*args, **kwargs)
    except requests.ConnectionError:
        raise SourceError(f"{ref}: {what} failed: cannot connect to the registry {ref.host}") from None
    except requests.Timeout:
        raise SourceError(f"{ref}: {what} failed: the registry {ref.host} timed out") from None
    except requests.RequestException as e:
        raise SourceError(f"{ref}: {what} failed ({cut(config.redact(first_line(e)), 160)})") from None
    except ValueError as e:  # oras: "Cannot respond to request for authentication."
        raise SourceError(f"{ref}: {what} failed ({cut(first_line(e), 160)}); check the registry's credentials "
                          f"(Docker config or ${USER_ENV}/${PASSWORD_ENV})") from None
    if resp.status_code >= 300:
        raise SourceError(f"{ref}: {what}: the registry answers HTTP {resp.status_code}")
    return resp


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


def push(artifacts, to: str, names=None, *, releases: dict[str, Release] | None = None,
         progress: Progress = quiet) -> list[dict]:
    """Push each model of ``artifacts`` to ``<to>/<name>``, tagged with its version and ``latest``.
    Returns one row per model: name, version, reference (by digest), digest, layers."""
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
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": MODELPACK_ARTIFACT,
                    "config": conf_desc, "layers": layers, "annotations": _annotations(m)}
        resp = _call("manifest upload", target, reg.upload_manifest, manifest, container)
        digest = resp.headers.get("Docker-Content-Digest", "")
        _call("tag latest", target, reg.upload_manifest, manifest, reg.get_container(
            f"{target.host}/{target.repository}:{LATEST}"))
        by_digest = OciRef(ref.host, target.repository, digest=digest) if _DIGEST.match(digest) else None
        rows.append({"model": m.name, "version": m.version, "tag": str(target),
                     "reference": str(by_digest) if by_digest else None, "digest": digest, "layers": len(layers)})
        progress(f"{m.name}: pushed {len(layers)} layer(s) to {target} ({digest[:19]}...)")
    return rows


def _watched_adapter():
    """A ``requests`` adapter whose every new connection is watched by the adapter's current
    :class:`~zoo.hub.transport.Watch` (set around each request): when the command's deadline
    passes, the watch shuts the sockets down, so a registry (or its token server) that trickles
    its headers or a body ends the pull then, not when it stops sending."""
    import requests.adapters
    import urllib3.connection
    import urllib3.connectionpool

    class Adapter(requests.adapters.HTTPAdapter):
        watch = None

        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            adapter = self

            def watched(base):
                class Conn(base):
                    def _new_conn(self):
                        sock = super()._new_conn()
                        if adapter.watch is not None:
                            adapter.watch.add(sock)
                        return sock
                return Conn

            class Pool(urllib3.connectionpool.HTTPConnectionPool):
                ConnectionCls = watched(urllib3.connection.HTTPConnection)

            class TlsPool(urllib3.connectionpool.HTTPSConnectionPool):
                ConnectionCls = watched(urllib3.connection.HTTPSConnection)

            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TlsPool}

    return Adapter()


def parse_oci_manifest(raw: bytes, where: str) -> dict[str, dict]:
    """The layers of a zoo model artifact's OCI manifest by their title (a checked relative path);
    anything else, however nested or odd, is one ``IntegrityError`` or ``ManifestError`` line."""
    from ..builder import manifest as mf

    manifest = mf.parse_json(raw, where, bounds=True)  # depth, size of values: before any walk
    try:
        layers = {}
        for layer in manifest["layers"]:
            path = safe_relpath(layer["annotations"][OCI_TITLE], f"{where} layer title")
            if not _DIGEST.match(layer["digest"]) or isinstance(layer["size"], bool) or \
                    not isinstance(layer["size"], int) or layer["size"] < 0:
                raise ValueError("a layer without a sha256 digest and size")
            layers[path] = layer
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{where}: not a zoo model artifact ({cut(first_line(e), 120)})") from None
    return layers


class OciSource:
    """A source for the hub's pull (``zoo pull --from oci://...``): the model's ``manifest.json``
    layer is the manifest, every file a layer, each checked against both digests."""

    remote = True

    def __init__(self, spec: str):
        self.ref = OciRef.parse(spec)
        self._reg = None
        self._layers: dict[str, dict] | None = None
        self._deadline: config.Deadline | None = None  # the command's, from its first request

    def __str__(self) -> str:
        return str(self.ref)

    shown = property(__str__)

    @property
    def key(self) -> str:
        return hashlib.sha256(str(self.ref).encode()).hexdigest()[:16]

    def _registry(self):
        if self._reg is None:
            self._reg = registry(self.ref)
            self._adapter = _watched_adapter()
            for prefix in ("http://", "https://"):
                self._reg.session.mount(prefix, self._adapter)
            self._container = self._reg.get_container(f"{self.ref.host}/{self.ref.repository}:{LATEST}")
            self._reg.auth.load_configs(self._container)
        return self._reg

    def _budget(self, budget: config.Deadline | None) -> config.Deadline:
        """The deadline of this request: the command's (``ZOO_DEADLINE`` from the source's first
        request, for every request after it), or the caller's where that ends sooner."""
        if self._deadline is None:
            self._deadline = config.Deadline()
        return min((b for b in (budget, self._deadline) if b is not None), key=lambda b: b.end)

    def _get(self, what: str, url: str, limit: int, accept: str | None = None, sink=None,
             budget: config.Deadline | None = None) -> bytes:
        """GET ``url`` (streamed), at most ``limit`` bytes; ``sink`` gets each block instead of
        keeping them. A watchdog ends the request, headers included, when the deadline passes."""
        from ..hub.transport import Watch

        reg = self._registry()
        budget = self._budget(budget)
        where = f"{self.ref}: {what}"
        budget.check(where)
        buf, n, resp = bytearray(), 0, None
        with Watch(budget) as watch:
            self._adapter.watch = watch
            try:
                resp = _call(what, self.ref, reg.do_request, url, "GET",
                             headers={"Accept": accept} if accept else {}, stream=True)
                for block in resp.iter_content(config.CHUNK):
                    n += len(block)
                    if n > limit:
                        raise IntegrityError(f"{where} is larger than the {limit:,} bytes expected; refusing it")
                    budget.check(where)
                    (sink or buf.extend)(block)
                if watch.fired:  # cut off: what arrived may look whole (headers ended by the shutdown)
                    budget.expire(where)
            except Exception as e:  # noqa: BLE001 - requests raises several types mid-body
                if isinstance(e, IntegrityError):
                    raise
                if watch.fired or budget.remaining() <= 0:
                    budget.expire(where)
                if isinstance(e, SourceError):
                    raise
                raise SourceError(f"{where} failed ({cut(first_line(e), 160)})") from None
            finally:
                self._adapter.watch = None
                if resp is not None:
                    resp.close()
                reg.session.close()  # no connection outlives its watch: the next request opens a watched one
        return bytes(buf)

    def _oci_manifest(self, budget: config.Deadline | None = None) -> dict:
        reg = self._registry()
        url = f"{reg.prefix}://{self.ref.host}/v2/{self.ref.repository}/manifests/{self.ref.reference}"
        raw = self._get("the OCI manifest", url, config.MAX_MANIFEST_BYTES, accept=OCI_MANIFEST, budget=budget)
        if self.ref.digest and "sha256:" + hashlib.sha256(raw).hexdigest() != self.ref.digest:
            raise IntegrityError(f"{self.ref}: the registry sent a manifest with another digest; rejected")
        return parse_oci_manifest(raw, str(self.ref))

    def _blob_url(self, digest: str) -> str:
        return f"{self._registry().prefix}://{self.ref.host}/v2/{self.ref.repository}/blobs/{digest}"

    def read_manifest(self, progress: Progress = quiet, budget=None) -> dict:
        from ..builder import manifest as mf
        from ..hub.source import parse_manifest

        self._layers = self._oci_manifest(budget)
        layer = self._layers.get(mf.MANIFEST_NAME)
        if layer is None:
            raise IntegrityError(f"{self.ref}: the artifact has no {mf.MANIFEST_NAME} layer; not a zoo model artifact")
        raw = self._blob(layer, mf.MANIFEST_NAME, min(layer["size"], config.MAX_MANIFEST_BYTES), budget=budget)
        return parse_manifest(raw, f"{self.ref} {mf.MANIFEST_NAME}")

    def _blob(self, layer: dict, path: str, limit: int, sink=None, budget=None) -> bytes:
        h = hashlib.sha256()

        def both(block):
            h.update(block)
            if sink is not None:
                sink(block)
        buf = self._get(f"layer {path}", self._blob_url(layer["digest"]), limit, sink=both if sink else None,
                         budget=budget)
        if sink is None:
            h.update(buf)
        if "sha256:" + h.hexdigest() != layer["digest"]:
            raise IntegrityError(f"{path} from {self.ref} does not match its layer digest {layer['digest'][:19]}...; "
                                 "rejected")
        return buf

    def fetch_into(self, rec: dict, f, progress: Progress = quiet, budget=None) -> None:
        """Write ``rec``'s layer into the open file ``f``; raise unless it matches both the layer
        digest and the zoo manifest's size and sha256."""
        if self._layers is None:
            self._layers = self._oci_manifest(budget)
        layer = self._layers.get(rec["path"])
        if layer is None:
            raise SourceError(f"{rec['path']} is listed in the manifest but not a layer of {self.ref}")
        if layer["digest"] != f"sha256:{rec['sha256']}" or layer["size"] != rec["bytes"]:
            raise IntegrityError(f"{rec['path']}: the OCI manifest and the zoo manifest of {self.ref} disagree; rejected")
        f.seek(0)
        f.truncate()
        self._blob(layer, rec["path"], rec["bytes"], sink=f.write, budget=budget)
