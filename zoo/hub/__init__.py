"""Publishing and pulling artifacts: a verified download client that cannot be turned against its user.

The shape of the retired ``onnx/hub.py`` (``list_models``, ``load``, a cache under
``XDG_CACHE_HOME``, files named by content hash) without its habits: every file is checked for size
and sha256 before it gets a final name, nothing half-written is ever left under a final name, no
option turns verification off, and nothing outside the cache (or the mirror) is ever written,
renamed, followed or deleted, whatever links or special files are planted in it.

Sources
    An ``http://`` or ``https://`` base URL, a ``file://`` URL, or a local folder, each holding
    ``manifest.json`` and the files it lists (what :func:`publish` writes). Default: the argument,
    else ``$ZOO_SOURCE``, else ``artifacts/`` (the local build output).

Cache (``--cache-dir``, else ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``):
see :mod:`zoo.hub.cache` for the layout and the locking. ``ZOO_OFFLINE=1`` makes no network call.

Modules: ``config`` (settings, errors), ``paths`` (safe names, the no-follow filesystem),
``source`` (sources and their identity), ``transport`` (one request: deadline, redirects, retries),
``external`` and ``onnxwire`` (ONNX external data, read in a stream), ``cache``, ``admin`` (cache
list/verify/clear), ``inspect`` (``zoo info``). A pull (``pull``) goes source -> ``trust`` (the
anchor) -> ``metadata`` (with ``tufclient``: python-tuf's client) -> ``plan`` -> ``modelpull`` (blobs, view). Releases:
``publish`` and ``release`` (versions, the mirror's layout), ``repo`` (TUF metadata, the
publisher's side), ``rotate``, ``keys``, ``signing`` (OpenSSF model signing), ``lockfile``. No torch here.
"""

from __future__ import annotations

import sys
import types

from ..spec import PRECISIONS
from . import config
from .admin import cache_clear, cache_list, cache_verify
from .cache import Cache, resolve_cache_dir
from .config import (
    ALLOW_HTTP_ENV,
    CACHE_ENV,
    DEADLINE_ENV,
    DEFAULT_SOURCE,
    OFFLINE_ENV,
    RETRY_STATUS,
    SOURCE_ENV,
    SPEED_LIMIT_ENV,
    SPEED_TIME_ENV,
    HubError,
    IntegrityError,
    MissingSourceError,
    OfflineError,
    SourceError,
    UnknownModelError,
    UnsafePathError,
    offline,
    redact,
)
from .external import external_data_files
from .paths import safe_name, safe_relpath
from .publish import publish
from .signing import SignatureError
from .keys import keygen, keygen_publisher
from .trust import REQUIRE_ENV, TRUST_ENV, TrustStoreError, trust_add, trust_list, trust_policy, trust_remove, trust_require
from .pull import PullResult, list_models, list_versions, load, lock, pull
from .rotate import rotate
from .run import recommended_precision, session
from .source import Source, parse_manifest, resolve_source

__all__ = [
    "PRECISIONS", "ALLOW_HTTP_ENV", "CACHE_ENV", "DEADLINE_ENV", "DEFAULT_SOURCE", "OFFLINE_ENV", "RETRY_STATUS", "SOURCE_ENV",
    "SPEED_LIMIT_ENV", "SPEED_TIME_ENV", "HubError", "IntegrityError", "OfflineError", "SourceError", "MissingSourceError",
    "UnknownModelError", "UnsafePathError", "Cache", "PullResult", "Source", "cache_clear", "cache_list",
    "cache_verify", "external_data_files", "list_models", "load", "offline", "parse_manifest", "publish", "pull",
    "recommended_precision", "redact", "resolve_cache_dir", "resolve_source", "safe_name", "safe_relpath", "session",
    "SignatureError", "TRUST_ENV", "REQUIRE_ENV", "TrustStoreError", "keygen", "keygen_publisher", "list_versions",
    "lock", "rotate", "trust_add", "trust_list", "trust_policy", "trust_remove", "trust_require",
]


class _Hub(types.ModuleType):
    """``zoo.hub.TIMEOUT_S = 5`` (or a monkeypatch of it) tunes the one setting in ``zoo.hub.config``:
    every knob is a property of the module, read and written there."""


for _name in config.KNOBS:
    setattr(_Hub, _name, property(lambda self, n=_name: getattr(config, n),
                                  lambda self, value, n=_name: setattr(config, n, value)))
del _name
sys.modules[__name__].__class__ = _Hub
