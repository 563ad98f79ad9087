"""OCI registries as the hub speaks to them: references (``oci://HOST[:PORT]/REPO[:TAG|@DIGEST]``),
the ``oras`` registry client with one attempt per request and a watchdog on every connection, one
line per failure naming no credential, a reader's requests (:class:`RegistryClient`: streamed,
bounded, on the pull's deadline, manifests and blobs checked against their digests), bounded parsing of what a registry sends, and the referrers
conventions (OCI 1.1's ``subject``, the fallback tag ``sha256-<hex>``). The reader built on it is
:mod:`zoo.hub.oci`; the writer :mod:`zoo.formats.oci`."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass

from ..errors import InputError, cut
from . import config
from .config import IntegrityError, SourceError, first_line
from .paths import safe_relpath

SCHEME = "oci://"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_TITLE = "org.opencontainers.image.title"
RELEASE_ARTIFACT = "application/vnd.zoo.release.v1+json"  # the artifactType of a release referrer
TIMESTAMP_ANNOTATION = "org.zoo.tuf.timestamp.version"
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"  # OCI 1.1's empty config: the two bytes "{}"
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_MEDIA, "size": 2,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
USER_ENV, PASSWORD_ENV, PLAIN_HTTP_ENV = "ZOO_OCI_USERNAME", "ZOO_OCI_PASSWORD", "ZOO_OCI_PLAIN_HTTP"
REFERRERS_ENV = "ZOO_OCI_REFERRERS"  # "tag": use only the fallback tag scheme (push and pull)
LATEST = "latest"
MAX_REFERRERS = 256  # release artifacts considered per model version
_NAME = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")  # distribution spec
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})$")


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
        path = path[:-1] if path.endswith("/") and not (tag or digest) else path  # the identity's own spelling
        if not re.match(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$", host) or not path or not _NAME.match(path):
            raise InputError(f"{shown} is not oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] "
                             "(repository names are lowercase letters, digits, '.', '_', '-' and '/')")
        return cls(host.lower(), path, tag, digest)

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


class OciNotFound(SourceError):
    """The registry answers 404: a repository, tag, manifest or blob that is not there (the message
    says "HTTP 404", the same "missing" a server gives, see :func:`zoo.hub.metadata.read_or_none`)."""


def _call(what: str, ref, fn, *args, **kwargs):
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
        resp.close()
        kind = OciNotFound if resp.status_code == 404 else SourceError
        err = kind(f"{ref}: {what}: the registry answers HTTP {resp.status_code}")
        err.status = resp.status_code
        raise err
    return resp


def _watched_adapter():
    """A ``requests`` adapter whose every new connection is watched by the adapter's current
    :class:`~zoo.hub.transport.Watch` (set around each request): when the pull's deadline passes,
    the watch shuts the sockets down, so a registry that trickles its headers or a body ends the
    pull then, not when it stops sending."""
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


def parse_json(raw: bytes, where: str):
    """A registry's JSON, bounded (depth first: a deeply nested document is one line, never a
    RecursionError)."""
    from ..builder import manifest as mf

    return mf.parse_json(raw, where, bounds=True)


def parse_oci_manifest(raw: bytes, where: str) -> dict[str, dict]:
    """The layers of an OCI manifest by their title (a checked relative path); anything else,
    however nested or odd, is one ``IntegrityError`` or ``ManifestError`` line."""
    manifest = parse_json(raw, where)
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


def fallback_tag(digest: str) -> str:
    """The distribution spec 1.1's referrers tag for a subject: ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


def referrers_mode() -> str:
    return "tag" if os.environ.get(REFERRERS_ENV, "").strip().lower() == "tag" else "auto"


class RegistryClient:
    """One reader's requests to one registry (:class:`zoo.hub.oci.OciSource`'s): the ``oras``
    client made on first use (credentials for the repository from the Docker config), every GET
    streamed and bounded in size under the caller's deadline (else one for this client, from its
    first request on) and a watchdog, one line on failure; manifests and blobs checked against
    their digests."""

    def __init__(self, ref: OciRef):
        self.ref = ref
        self._reg = None
        self._adapter = None
        self._deadline: config.Deadline | None = None

    def _registry(self):
        if self._reg is None:
            self._reg = registry(self.ref)
            self._adapter = _watched_adapter()
            for prefix in ("http://", "https://"):
                self._reg.session.mount(prefix, self._adapter)
            self._reg.auth.load_configs(self._reg.get_container(f"{self.ref.host}/{self.ref.repository}:{LATEST}"))
        return self._reg

    def _budget(self, budget: config.Deadline | None) -> config.Deadline:
        """The pull's deadline; without one (a direct caller), one for this source from its first
        request on: never a new one per request."""
        if budget is not None:
            return budget
        if self._deadline is None:
            self._deadline = config.Deadline()
        return self._deadline

    def manifest_url(self, ref: OciRef, reference: str) -> str:
        return f"{self._registry().prefix}://{ref.host}/v2/{ref.repository}/manifests/{reference}"

    def blob_url(self, ref: OciRef, digest: str) -> str:
        return f"{self._registry().prefix}://{ref.host}/v2/{ref.repository}/blobs/{digest}"

    def referrers_url(self, ref: OciRef, digest: str) -> str:
        return (f"{self._registry().prefix}://{ref.host}/v2/{ref.repository}/referrers/{digest}"
                f"?artifactType={urllib.parse.quote(RELEASE_ARTIFACT, safe='')}")

    def get(self, what: str, ref: OciRef, url: str, limit: int, accept: str | None = None, sink=None,
             budget: config.Deadline | None = None) -> bytes:
        """GET ``url`` (streamed), at most ``limit`` bytes; ``sink`` gets each block instead of
        keeping them. A watchdog ends the request, headers included, when the deadline passes."""
        from .transport import Watch

        reg = self._registry()
        budget = self._budget(budget)
        where = f"{ref}: {what}"
        budget.check(where)
        buf, n, resp = bytearray(), 0, None
        with Watch(budget) as watch:
            self._adapter.watch = watch
            try:
                resp = _call(what, ref, reg.do_request, url, "GET", headers={"Accept": accept} if accept else {},
                             stream=True)
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

    def blob(self, ref: OciRef, layer: dict, path: str, limit: int, sink=None, budget=None) -> bytes:
        h = hashlib.sha256()

        def both(block):
            h.update(block)
            if sink is not None:
                sink(block)
        buf = self.get(f"layer {path}", ref, self.blob_url(ref, layer["digest"]), limit,
                        sink=both if sink else None, budget=budget)
        if sink is None:
            h.update(buf)
        if "sha256:" + h.hexdigest() != layer["digest"]:
            raise IntegrityError(f"{path} from {ref} does not match its layer digest {layer['digest'][:19]}...; "
                                 "rejected")
        return buf

    def manifest(self, what: str, ref: OciRef, reference: str, budget, expect: str | None = None) -> tuple[bytes, str]:
        """The OCI manifest at ``reference`` and its digest, which must be ``expect`` if given."""
        raw = self.get(what, ref, self.manifest_url(ref, reference), config.MAX_MANIFEST_BYTES, accept=OCI_MANIFEST,
                       budget=budget)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if expect and digest != expect:
            raise IntegrityError(f"{ref}: the registry sent a manifest with another digest; rejected")
        return raw, digest
