"""One HTTP request under a pull's policy: its deadline, its redirects, its retries.

The deadline bounds the whole request, headers included: a watchdog shuts the request's sockets
down when the pull's time is up, so a server that sends its headers at one byte per second,
``100 Continue`` forever or trailer lines forever is cut off, not waited for (a socket timeout
alone never fires while bytes keep coming). Redirects are followed only from http(s) to http(s),
and from https to plain http only where the user allows it. Permanent failures (a host that does
not resolve, an invalid URL, an untrusted certificate) are reported at once, never retried.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from ..errors import cut
from . import config
from .config import Progress, SourceError, first_line, redact

SCHEMES = ("http", "https")


class Transient(Exception):
    """A failure worth another attempt (connection refused or reset, timeout, 5xx, short body)."""


class Unresolvable(OSError):
    """A host name that does not resolve (temporary: the resolver itself failed, worth a retry)."""

    def __init__(self, host: str, err: socket.gaierror):
        super().__init__(f"cannot resolve host {host}")
        self.host = host
        self.temporary = err.errno == socket.EAI_AGAIN


def _cause(e: BaseException) -> BaseException:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError) \
            and isinstance(e.reason, BaseException):
        return e.reason
    return e


def reason(e: BaseException) -> str:
    e = _cause(e)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(e, http.client.IncompleteRead):
        return "the server closed the connection mid-body"
    if isinstance(e, ConnectionError):
        return f"connection lost ({first_line(e)})"
    if isinstance(e, urllib.error.URLError):
        return first_line(e.reason) if isinstance(e.reason, str) else first_line(e)
    return first_line(e)


def classify(e: BaseException, where: str) -> Exception:
    """A failed request as ``Transient`` (retry it) or ``SourceError`` (a permanent failure)."""
    cause = _cause(e)
    if isinstance(cause, Unresolvable):
        return Transient(str(cause)) if cause.temporary else SourceError(f"{where}: {cause}")
    if isinstance(cause, ssl.SSLCertVerificationError):
        return SourceError(f"{where}: the server's TLS certificate is not trusted ({cut(cause.verify_message or '', 120)})")
    if isinstance(cause, (ValueError, http.client.InvalidURL)) and not isinstance(cause, ssl.SSLError):
        return SourceError(f"{where}: {first_line(cause)}")
    return Transient(reason(e))


class Watch:
    """The sockets of one request; all shut down when the deadline passes (``fired`` then says so)."""

    def __init__(self, budget: config.Deadline):
        self.budget, self.fired = budget, False
        self._socks: list[socket.socket] = []  # duplicates: shutting one down ends the connection
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, budget.remaining()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watch:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for s in self._socks:
                s.close()
            self._socks.clear()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def connect(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):  # noqa: SLF001
        try:
            sock = socket.create_connection(address, timeout, source_address)
        except socket.gaierror as e:
            raise Unresolvable(address[0], e) from None
        return self.add(sock)

    def add(self, sock: socket.socket) -> socket.socket:
        """Watch ``sock`` (a connection made by another client library) from now on."""
        with self._lock:
            self._socks.append(sock.dup())
            if self.fired:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return sock

    def conn_factory(self, cls):
        def make(host, **kw):
            conn = cls(host, **kw)
            # http.client's own hook for the raw connect (before any TLS handshake)
            conn._create_connection = self.connect  # noqa: SLF001
            return conn
        return make


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http(s), from https to http only when allowed, and only a few times."""

    max_redirections = config.MAX_REDIRECTS

    def __init__(self, allow_http: bool):
        self.allow_http = allow_http

    def _check(self, req, newurl):
        try:
            target = urllib.parse.urljoin(req.full_url, newurl or "")
            scheme = urllib.parse.urlsplit(target).scheme.lower()
        except ValueError as e:
            raise SourceError(f"{redact(req.full_url)}: the server redirects to an invalid URL "
                              f"{cut(redact(newurl), 120)!r} ({first_line(e)})") from None
        if scheme not in SCHEMES:
            raise SourceError(f"{redact(req.full_url)}: the server redirects to {cut(redact(target), 120)}; "
                              "only http(s) redirects are followed")
        if scheme == "http" and urllib.parse.urlsplit(req.full_url).scheme.lower() == "https" and not self.allow_http:
            raise SourceError(f"{redact(req.full_url)}: the server redirects from https to plain http "
                              f"({cut(redact(target), 120)}); refusing it (set ${config.ALLOW_HTTP_ENV}=1 to allow it)")
        return target

    def http_error_302(self, req, fp, code, msg, headers):
        self._check(req, headers.get("location") or headers.get("uri"))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return super().redirect_request(req, fp, code, msg, headers, self._check(req, newurl))


class _Http(urllib.request.HTTPHandler):
    def __init__(self, watch: Watch):
        super().__init__()
        self.watch = watch

    def http_open(self, req):
        return self.do_open(self.watch.conn_factory(http.client.HTTPConnection), req)


class _Https(urllib.request.HTTPSHandler):
    def __init__(self, watch: Watch):
        super().__init__()
        self.watch = watch

    def https_open(self, req):
        return self.do_open(self.watch.conn_factory(http.client.HTTPSConnection), req)


def opener(watch: Watch, source_scheme: str) -> urllib.request.OpenerDirector:
    """Only the handlers http(s) needs: no ftp, file or data handler exists to be redirected to."""
    allow_http = config.allow_http() or source_scheme == "http"
    op = urllib.request.OpenerDirector()
    for h in (urllib.request.ProxyHandler(), _Http(watch), _Https(watch), _RedirectPolicy(allow_http),
              urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        op.add_handler(h)
    return op


def with_retries(what: str, attempt, progress: Progress, budget: config.Deadline):
    delay = config.BACKOFF_S
    last = "no attempt"
    for i in range(config.RETRIES + 1):
        budget.check(what)
        try:
            return attempt()
        except Transient as e:
            last = str(e)
            if i == config.RETRIES:
                break
            wait = min(delay, max(budget.remaining(), 0))
            progress(f"{what}: {last}; retrying in {wait:g}s ({i + 1}/{config.RETRIES})")
            config.sleep(wait)
            delay = min(delay * 2, config.BACKOFF_MAX_S)
    raise SourceError(f"cannot fetch {what}: {last} (gave up after {config.RETRIES + 1} attempts)")


def stream(read, sink, budget: config.Deadline, what: str) -> None:
    """Feed ``sink`` until ``read`` returns nothing; abandon a transfer under the floor rate."""
    limit, window = config.speed_limit(), config.speed_time()
    start, got = time.monotonic(), 0
    while True:
        budget.check(what)
        block = read()
        if not block:
            return
        sink(block)
        got += len(block)
        elapsed = time.monotonic() - start
        if elapsed >= window:
            if got < limit * elapsed:
                raise Transient(f"the transfer ran at {got / elapsed:,.0f} B/s, under the floor of {limit:,.0f} B/s "
                                f"over {window:g} s (${config.SPEED_LIMIT_ENV}, ${config.SPEED_TIME_ENV})")
            start, got = time.monotonic(), 0


def bar(progress: Progress, total: int, what: str):
    """A byte counter for one transfer: ``progress.bar(total, what)`` where the caller offers one
    (the CLI does, on a terminal), else nothing."""
    make = getattr(progress, "bar", None)
    return make(total, what) if make is not None else contextlib.nullcontext(None)


__all__ = ["SCHEMES", "Transient", "Watch", "bar", "classify", "opener", "reason", "stream", "with_retries"]
