"""Where artifacts come from: http(s) URLs, file:// URLs and folders, each with manifest.json.

Transfers have a floor rate over a window (curl's ``--speed-limit``/``--speed-time``) and share a
pull's deadline; transient failures are retried with exponential back-off. Redirects are followed
only from http(s) to http(s) (no other scheme is even given a handler), credentials in a URL are
sent as Basic authentication to that host only and never appear in a message or record. One
request's mechanics (its deadline watchdog, redirect policy, retries) live in ``transport``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError, ManifestError, NoManifestError, cut
from . import config
from .config import (
    IntegrityError,
    Progress,
    SourceError,
    UnsafePathError,
    first_line,
    quiet,
    redact,
    strip_credentials,
)
from .entries import VIEW_OWN, check_entry, parse_manifest  # noqa: F401 - re-exported
from .paths import Dir, hash_stream
from .transport import SCHEMES as _SCHEMES
from .transport import Transient as _Transient
from .transport import Watch, bar, classify, opener, stream, with_retries


@dataclass(frozen=True)
class Source:
    """Where artifacts come from: ``url`` (normalized, without credentials) and, for local ones,
    ``root``. ``str(source)`` is safe to print."""

    url: str
    root: Path | None = None
    credentials: tuple[str, str] | None = None

    @property
    def remote(self) -> bool:
        return self.root is None

    @property
    def shown(self) -> str:
        if not self.remote:
            return str(self.root)
        if self.credentials is None:
            return self.url
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://***@{rest}"

    def __str__(self) -> str:
        return self.shown

    @property
    def identity(self) -> str:
        """The source's one normalised name (what trust is bound to): the URL without credentials,
        scheme and host lowercased, IDNA, default port dropped, dot segments and ``//`` resolved;
        a folder's real path as a file:// URL."""
        return self.url

    @property
    def key(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def _url(self, rel: str) -> str:
        return urllib.parse.urljoin(self.url, urllib.parse.quote(rel))

    def _where(self, rel: str) -> str:
        return cut(urllib.parse.urljoin(self.shown, urllib.parse.quote(rel)) if self.remote else self.root / rel)

    def _root(self) -> Dir:
        try:
            return Dir.open_root(self.root, f"source {self}")
        except (FileNotFoundError, ValueError):
            raise config.MissingSourceError(f"source folder {self.root} does not exist (give --from or ${config.SOURCE_ENV}, "
                              "or run `zoo build` for the default artifacts/)") from None

    def _http(self, rel: str, consume, budget: config.Deadline):
        from .. import __version__

        url, where = self._url(rel), self._where(rel)
        req = urllib.request.Request(url, headers={"User-Agent": f"zoo/{__version__}",
                                                   "Accept-Encoding": "identity"})
        if self.credentials is not None:  # unredirected: never sent to the host of a redirect
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            req.add_unredirected_header("Authorization", f"Basic {token}")
        timeout = max(0.05, min(config.TIMEOUT_S, config.speed_time(), budget.remaining()))
        with Watch(budget) as watch:  # the deadline bounds the whole request, headers included
            try:
                try:
                    resp = opener(watch, urllib.parse.urlsplit(url).scheme).open(req, timeout=timeout)
                except urllib.error.HTTPError as e:
                    e.close()
                    if e.code in config.RETRY_STATUS:
                        raise _Transient(f"HTTP {e.code} {cut(e.reason, 80)}") from None
                    raise SourceError(f"{where}: the source answers HTTP {e.code} {cut(e.reason, 80)}") from None
                except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
                    raise classify(e, where) from None
                with resp:
                    def read():
                        try:
                            return resp.read1(config.CHUNK)
                        except (OSError, http.client.HTTPException, ValueError) as e:
                            raise classify(e, where) from None
                    result = consume(resp, read)
            except (_Transient, SourceError):
                if watch.fired:
                    budget.expire(where)
                raise
            if watch.fired:  # e.g. trailer lines until the deadline: the body may be whole, the request is not
                budget.expire(where)
            return result

    def read_small(self, rel: str, limit: int, progress: Progress, budget: config.Deadline) -> bytes:
        """A small file of the source (a manifest, an index), bounded in size and time. A missing
        file is FileNotFoundError in a folder, a SourceError (HTTP 404) on a server."""
        where = self._where(rel)
        if self.remote:
            def consume(resp, read):
                buf = bytearray()

                def sink(block):
                    buf.extend(block)
                    if len(buf) > limit:
                        raise ManifestError(f"{where}: larger than {limit:,} bytes; refusing it")
                stream(read, sink, budget, where)
                return bytes(buf)

            return with_retries(where, lambda: self._http(rel, consume, budget), progress, budget)
        with self._root() as root:
            try:
                return root.read_bytes(rel, limit)
            except IntegrityError:
                raise ManifestError(f"{where}: larger than {limit:,} bytes; refusing it") from None

    def read_manifest(self, progress: Progress = quiet, budget: config.Deadline | None = None) -> dict:
        where = self._where(mf.MANIFEST_NAME)
        try:
            raw = self.read_small(mf.MANIFEST_NAME, config.MAX_MANIFEST_BYTES, progress, budget or config.Deadline())
        except FileNotFoundError:
            raise NoManifestError(f"no manifest at {where}") from None
        except OSError as e:
            raise SourceError(f"cannot read {where}: {e.strerror or first_line(e)}") from None
        return parse_manifest(raw, where)

    def fetch_into(self, rec: dict, f, progress: Progress = quiet, budget: config.Deadline | None = None) -> None:
        """Write ``rec``'s file into the open binary file ``f``; raise unless size and sha256 match."""
        budget = budget or config.Deadline()
        rel, size, sha = rec["path"], rec["bytes"], rec["sha256"]
        where = self._where(rel)

        def check_length(total):
            if total is not None and total != size:
                raise IntegrityError(f"{rel} is {total:,} bytes at {self}, the manifest says {size:,}"
                                     + ("; refusing a file larger than the manifest says" if total > size else ""))

        def receive(read):
            f.seek(0)
            f.truncate()
            h, n = hashlib.sha256(), 0
            with bar(progress, size, rel) as counter:
                def sink(block):
                    nonlocal n
                    n += len(block)
                    if n > size:
                        raise IntegrityError(f"{rel}: {self} sent more than the {size:,} bytes the manifest lists; "
                                             "refusing a file larger than the manifest says")
                    h.update(block)
                    f.write(block)
                    if counter is not None:
                        counter.update(len(block))
                stream(read, sink, budget, where)
            if n < size:
                raise _Transient(f"the transfer ended after {n:,} of {size:,} bytes")
            if h.hexdigest() != sha:
                raise IntegrityError(f"{rel} from {self} has sha256 {h.hexdigest()[:16]}..., the manifest says "
                                     f"{sha[:16]}...; rejected")

        if self.remote:
            def consume(resp, read):
                length = resp.headers.get("Content-Length")
                check_length(int(length) if length and length.isdigit() and len(length) < 20 else None)
                receive(read)
            with_retries(where, lambda: self._http(rel, consume, budget), progress, budget)
            return
        with self._root() as root:
            try:
                with root.open_read(rel) as src:
                    check_length(os.fstat(src.fileno()).st_size)
                    try:
                        receive(lambda: src.read(config.CHUNK))
                    except _Transient as e:
                        raise IntegrityError(f"{rel} at {self}: {e}") from None
            except FileNotFoundError:
                raise SourceError(f"{rel} is listed in the manifest but missing at {self}") from None

    def verify_local(self, rec: dict) -> None:
        """For publish: the local file ``rec`` names has the recorded size and sha256."""
        with self._root() as root:
            try:
                with root.open_read(rec["path"]) as f:
                    st = os.fstat(f.fileno())
                    if st.st_size != rec["bytes"]:
                        raise IntegrityError(f"{rec['path']} is {st.st_size:,} bytes, the manifest says "
                                             f"{rec['bytes']:,}")
                    if hash_stream(f, rec["bytes"])[0] != rec["sha256"]:
                        raise IntegrityError(f"{rec['path']} does not match its sha256 in the manifest")
            except FileNotFoundError:
                raise IntegrityError(f"{rec['path']} is listed in the manifest but missing") from None


def normal_url(url: str, shown: str) -> str:
    """One spelling per http(s) source: scheme and host lowercased, the host in IDNA (ASCII), the
    default port dropped, ``//`` and dot segments resolved, no query or fragment, a final ``/``.
    ``url`` has no credentials (``strip_credentials``)."""
    import posixpath

    p = urllib.parse.urlsplit(url)
    scheme = p.scheme.lower()
    host = p.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InputError(f"source {shown!r}: the host is not a valid internationalised domain name") from None
    port = p.port
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    path = re.sub(r"/+", "/", p.path or "/")
    path = posixpath.normpath(path) if path not in ("", "/") else "/"
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    path = path.rstrip("/") + "/"
    return urllib.parse.urlunsplit((scheme, host, path, "", ""))


_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}(/\S*)?")  # 127.0.0.1:8000/zoo


def resolve_source(source: str | os.PathLike | None = None) -> Source:
    """The argument, else ``$ZOO_SOURCE``, else ``artifacts/``; ``ValueError`` for other schemes."""
    spec = os.fspath(source) if source not in (None, "") else (os.environ.get(config.SOURCE_ENV)
                                                               or config.DEFAULT_SOURCE)
    if not isinstance(spec, str):
        raise TypeError("a source is a URL or a folder, given as text")
    if spec[:6].lower() == "oci://":  # models in an OCI registry (zoo.hub.oci)
        from .oci import OciSource

        return OciSource(spec)
    shown = cut(redact(spec), 200)
    if "\0" in spec:
        raise InputError(f"source {shown!r} holds a NUL character")
    try:
        parsed = urllib.parse.urlsplit(spec)
        scheme = parsed.scheme.lower()
        host = parsed.hostname if scheme in _SCHEMES else None
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as e:
        raise InputError(f"source {shown!r} is not a valid URL ({first_line(e)})") from None
    if scheme in _SCHEMES:
        if not host:
            raise InputError(f"source {shown!r} has no host")
        clean, creds = strip_credentials(spec)
        base = normal_url(clean, shown)
        if base.endswith("/" + mf.MANIFEST_NAME + "/"):
            base = base[: -len(mf.MANIFEST_NAME) - 1]
        return Source(url=base, credentials=creds)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"source {shown!r}: file URLs with a host are not supported")
        root = Path(urllib.request.url2pathname(parsed.path))
    elif len(scheme) > 1 and not _HOST_PORT.fullmatch(spec):
        raise InputError(f"unsupported source {shown!r}: use an http(s):// URL, a file:// URL, an oci:// reference or a folder")
    else:
        root = Path(spec)
        if _HOST_PORT.fullmatch(spec) and not os.path.lexists(root):
            raise InputError(f"source {shown!r} is neither a URL nor a folder here; for a server, give its URL: "
                             f"http://{cut(redact(spec), 200)}")
    try:
        root = root.expanduser()
        if root.name == mf.MANIFEST_NAME and root.is_file():
            root = root.parent
        root = root.resolve()
    except (OSError, RuntimeError) as e:
        raise InputError(f"source {shown!r}: {first_line(e)}") from None
    return Source(url=root.as_uri() + "/", root=root)


__all__ = ["Source", "UnsafePathError", "check_entry", "parse_manifest", "resolve_source", "with_retries"]
