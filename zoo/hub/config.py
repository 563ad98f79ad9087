"""The hub's settings, errors and message helpers (the layer every other hub module stands on).

The network policy is a set of module constants (tests and embedders tighten them through
``zoo.hub``, which forwards assignments here) that environment variables override per call.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from collections.abc import Callable

from ..builder import manifest as mf
from ..errors import InputError, UnknownNameError, ZooError, cut

DEFAULT_SOURCE = "artifacts"
SOURCE_ENV = "ZOO_SOURCE"
CACHE_ENV = "ZOO_CACHE"
OFFLINE_ENV = "ZOO_OFFLINE"
SPEED_LIMIT_ENV = "ZOO_SPEED_LIMIT"  # bytes per second, like curl's --speed-limit
SPEED_TIME_ENV = "ZOO_SPEED_TIME"  # seconds, like curl's --speed-time
DEADLINE_ENV = "ZOO_DEADLINE"  # seconds for one whole pull (every file, every retry)
ALLOW_HTTP_ENV = "ZOO_ALLOW_HTTP"  # 1: follow a redirect from https to plain http

TIMEOUT_S = 30.0  # per socket operation (connect, each read)
RETRIES = 3  # further attempts after the first, for transient network failures only
BACKOFF_S = 0.5  # first wait; doubled after every failed attempt ...
BACKOFF_MAX_S = 8.0  # ... up to this
SPEED_LIMIT_BPS = 1024  # a transfer slower than this ...
SPEED_TIME_S = 30.0  # ... over this window is abandoned (and retried)
DEADLINE_S = 3600.0  # a pull ends within this, whatever the servers do
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_MANIFEST_BYTES = mf.MAX_MANIFEST_BYTES
CHUNK = 1 << 20
MAX_REDIRECTS = 5

# Names ``zoo.hub`` forwards to this module when they are assigned (monkeypatched) there.
KNOBS = ("TIMEOUT_S", "RETRIES", "BACKOFF_S", "BACKOFF_MAX_S", "SPEED_LIMIT_BPS", "SPEED_TIME_S",
         "DEADLINE_S", "MAX_MANIFEST_BYTES", "CHUNK", "_sleep")

Progress = Callable[[str], None]


def quiet(msg: str) -> None:
    pass


def _sleep(seconds: float) -> None:  # one place to observe the back-off in tests
    time.sleep(seconds)


def sleep(seconds: float) -> None:
    _sleep(seconds)


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise InputError(f"${name}={cut(raw, 40)}: expected a number >= {minimum:g}")
    return value


def speed_limit() -> float:
    """Bytes per second below which a transfer is abandoned (0 turns the floor off)."""
    return _env_number(SPEED_LIMIT_ENV, SPEED_LIMIT_BPS, 0)


def speed_time() -> float:
    return _env_number(SPEED_TIME_ENV, SPEED_TIME_S, 0.1)


def deadline() -> float:
    return _env_number(DEADLINE_ENV, DEADLINE_S, 0.1)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    return _env_flag(OFFLINE_ENV)


def allow_http() -> bool:
    return _env_flag(ALLOW_HTTP_ENV)


class Deadline:
    """The time one pull may take, shared by all its transfers and retries."""

    def __init__(self, seconds: float | None = None):
        self.seconds = deadline() if seconds is None else seconds
        self.end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            self.expire(what)

    def expire(self, what: str):
        raise SourceError(f"{what}: gave up, the pull took longer than its deadline of {self.seconds:g} s "
                          f"(${DEADLINE_ENV})")


# --------------------------------------------------------------------------------------------------
# Errors


class HubError(ZooError):
    """A publish or pull failed; the message is one line for the user."""


class IntegrityError(HubError):
    """A file's size or sha256 differs from the manifest, or it is larger than the manifest says."""


class SourceError(HubError):
    """The source cannot be reached, answers with an error, or keeps failing mid-transfer."""


class MissingSourceError(SourceError, InputError):
    """A source folder that does not exist: bad input (CLI exit 2)."""


class OfflineError(HubError):
    """``ZOO_OFFLINE=1`` and what was asked for is not in the cache."""


class UnsafePathError(HubError):
    """A name or path would land outside its folder, or a link or special file sits where the zoo
    expects one of its own files or folders."""


class UnknownModelError(HubError, UnknownNameError):
    """The source does not offer this model (or not at this precision)."""


# --------------------------------------------------------------------------------------------------
# Messages

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")


def redact(text) -> str:
    """``text`` with the credentials of every URL in it replaced: ``http://***@host/``."""
    return _USERINFO.sub(r"\1***@", str(text))


def strip_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without user info, and the (user, password) it held."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    creds = (urllib.parse.unquote(user), urllib.parse.unquote(password))
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), creds


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return cut(redact(text.splitlines()[0]))
