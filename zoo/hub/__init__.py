"""Publishing and pulling artifacts: a verified, cache-safe download client.

The shape of the retired ``onnx/hub.py`` (``list_models``, ``load``, a cache under
``XDG_CACHE_HOME``, files named by content hash) without its habits: every file is checked for size
and sha256 before it gets a final name, nothing half-written is ever left under a final name, and
no option turns verification off.

Sources
    An ``http://`` or ``https://`` base URL, a ``file://`` URL, or a local folder, each holding
    ``manifest.json`` and the files it lists (what :func:`publish` writes). Default: the argument,
    else ``$ZOO_SOURCE``, else ``artifacts/`` (the local build output).

Cache (``--cache-dir``, else ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``)::

    .lock                                  empty; flock()ed by every process that writes the cache
    blobs/sha256/<2 hex>/<sha256>          every file ever pulled, named by its content hash
    models/<name>/manifest.json            a readable view of one model, laid out like an
    models/<name>/<name>/model.onnx        artifacts folder (``zoo verify --artifacts`` runs on it);
    models/<name>/<name>/test_data_set_0/  real files, copied from the blobs (never links)
    sources/<key>.json                     the last verified manifest of each remote source
                                           (what ``ZOO_OFFLINE=1`` works from)

``ZOO_OFFLINE=1`` makes no network call: http(s) sources are answered from the cache alone (local
folders are still read; they involve no network).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..builder import manifest as mf
from ..errors import ManifestError, ProviderUnavailableError, ZooError
from ..fsutil import TMP_PREFIX, atomic_path, atomic_write_bytes, sha256_file

DEFAULT_SOURCE = "artifacts"
SOURCE_ENV = "ZOO_SOURCE"
CACHE_ENV = "ZOO_CACHE"
OFFLINE_ENV = "ZOO_OFFLINE"
PRECISIONS = ("fp32", "int8", "fp16", "int8_static")  # int8_static: added by zoo bench --recommend

# Network policy (module constants so that tests and embedders can tighten them).
TIMEOUT_S = 30.0  # per socket operation
RETRIES = 3  # further attempts after the first, for transient network failures only
BACKOFF_S = 0.5  # first wait; doubled after every failed attempt ...
BACKOFF_MAX_S = 8.0  # ... up to this
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_MANIFEST_BYTES = 32 << 20
CHUNK = 1 << 20

LOCK_NAME = ".lock"

Progress = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# Errors


class HubError(ZooError):
    """A publish or pull failed; the message is one line for the user."""


class IntegrityError(HubError):
    """A file's size or sha256 differs from the manifest, or it is larger than the manifest says."""


class SourceError(HubError):
    """The source cannot be reached, answers with an error, or keeps failing mid-transfer."""


class OfflineError(HubError):
    """``ZOO_OFFLINE=1`` and what was asked for is not in the cache."""


class UnsafePathError(HubError):
    """A manifest name or path (or a model's external data) would land outside its folder."""


class UnknownModelError(HubError, LookupError):
    """The source does not offer this model (or not at this precision)."""


# --------------------------------------------------------------------------------------------------
# Paths that may come from a stranger's manifest

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relpath(path, what: str = "path") -> str:
    """Return ``path`` if it is a plain relative POSIX path; raise ``UnsafePathError`` otherwise.

    Refused: empty, absolute, UNC (``//host``, ``\\\\host``), drive letters, backslashes, ``:``,
    ``..``, ``.`` or empty components, control characters.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{what}: empty or non-text path {path!r}")
    reason = None
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        reason = "control characters"
    elif path.startswith(("//", "\\\\")):
        reason = "a UNC path"
    elif path.startswith(("/", "\\")):
        reason = "an absolute path"
    elif _DRIVE.match(path):
        reason = "a drive letter"
    elif "\\" in path:
        reason = "a backslash"
    elif ":" in path:
        reason = "a ':'"
    else:
        parts = path.split("/")
        if ".." in parts:
            reason = "a '..' component"
        elif any(p in ("", ".") for p in parts):
            reason = "an empty or '.' component"
    if reason:
        raise UnsafePathError(f"{what}: refusing unsafe path {path!r} ({reason})")
    return path


def safe_name(name, what: str = "model name") -> str:
    safe_relpath(name, what)
    if "/" in name:
        raise UnsafePathError(f"{what}: refusing {name!r} (a name, not a path)")
    return name


def contained(root: Path, rel: str, what: str = "path", *, replacing: bool = False) -> Path:
    """``root / rel`` after checking that it resolves (symlinks followed) inside ``root``.

    With ``replacing`` the last component is not followed: it names a file that will be replaced
    by a rename (which replaces a link itself, never writing through it).
    """
    safe_relpath(rel, what)
    target = root / rel
    root_real = root.resolve()
    real = target.parent.resolve() / target.name if replacing else target.resolve()
    if real != root_real and root_real not in real.parents:
        raise UnsafePathError(f"{what}: {rel!r} resolves to {real}, outside {root_real}")
    return target


def _check_entry_paths(m: dict, where: str) -> None:
    """Refuse unsafe names and paths with a clear message, before the schema's terser one."""
    name = m.get("model")
    if isinstance(name, str):
        safe_name(name, f"{where}: model name")
    label = f"{where}: model {name!r}"
    if isinstance(m.get("model_path"), str):
        safe_relpath(m["model_path"], f"{label} model_path")
    seen = set()
    for f in m.get("files") or []:
        if isinstance(f, dict) and isinstance(f.get("path"), str):
            safe_relpath(f["path"], f"{label} file")
            if f["path"] in seen:
                raise ManifestError(f"{label} lists {f['path']!r} twice")
            seen.add(f["path"])
    sets = (m.get("test_data") or {}).get("sets") if isinstance(m.get("test_data"), dict) else None
    for s in sets or []:
        if isinstance(s, str):
            safe_relpath(s, f"{label} test data set")


def parse_manifest(raw: bytes, where: str) -> dict:
    """JSON, then the schema version, then every name and path, then the full JSON Schema."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, mf.SCHEMA_VERSION):
        mf.validate(data, where)  # raises the "unknown schema_version" error
    if isinstance(data, dict) and isinstance(data.get("models"), list):
        seen = set()
        for m in data["models"]:
            if isinstance(m, dict):
                _check_entry_paths(m, where)
                if m.get("model") in seen:
                    raise ManifestError(f"{where}: model {m.get('model')!r} is listed twice")
                seen.add(m.get("model"))
    mf.validate(data, where)
    return data


# --------------------------------------------------------------------------------------------------
# Files checked against manifest records


def matches(path: Path, rec: dict) -> bool:
    """True if ``path`` is a regular file (no symlink, no second hard link) of the recorded size
    and sha256."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != rec["bytes"]:
        return False
    return sha256_file(path) == rec["sha256"]


def _copy_verified(src: Path, dest: Path, rec: dict, mode: int | None = None) -> None:
    """Copy ``src`` to ``dest`` through a temporary file; rename only if the copy hashes right."""
    with atomic_path(dest) as tmp:
        h, n = hashlib.sha256(), 0
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while block := fi.read(CHUNK):
                n += len(block)
                if n > rec["bytes"]:
                    break
                h.update(block)
                fo.write(block)
        if n != rec["bytes"] or h.hexdigest() != rec["sha256"]:
            raise IntegrityError(f"{src} no longer matches the manifest ({rec['path']}); nothing was written")
        if mode is not None:
            os.chmod(tmp, mode)


def _iter_tensors(proto):
    def graph(g):
        yield from g.initializer
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        for n in g.node:
            yield from node(n)

    def node(n):
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices
            if a.HasField("g"):
                yield from graph(a.g)
            for g in a.graphs:
                yield from graph(g)

    yield from graph(proto.graph)
    for f in proto.functions:
        for n in f.node:
            yield from node(n)


def external_data_files(model_file: Path, model_relpath: str, entry: dict) -> list[dict]:
    """The manifest records of the external-data files ``model_file`` refers to.

    Raises ``UnsafePathError`` for a location outside the model's folder and ``IntegrityError`` for
    one the manifest does not list (or a file that is not ONNX at all).
    """
    import onnx

    try:
        proto = onnx.load_model(str(model_file), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same thing here
        raise IntegrityError(f"{model_relpath} is not a readable ONNX model ({_first_line(e)})") from None
    listed = {f["path"]: f for f in entry["files"]}
    folder = posixpath.dirname(model_relpath)
    out: dict[str, dict] = {}
    for t in _iter_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((kv.value for kv in t.external_data if kv.key == "location"), "")
        what = f"{model_relpath}: external data of tensor {t.name!r}"
        loc = "/".join(p for p in loc.split("/") if p != ".") if loc.startswith("./") else loc
        try:
            safe_relpath(loc, what)
        except UnsafePathError as e:
            raise UnsafePathError(f"{e} - it must stay inside the model's folder") from None
        rel = posixpath.join(folder, loc) if folder else loc
        if rel not in listed:
            raise IntegrityError(f"{what} is in {rel!r}, which the manifest does not list")
        out[rel] = listed[rel]
    return list(out.values())


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def _file_errors(what: str):
    """Turn a failed read or write of a local file (permissions, a full disk) into one line."""
    try:
        yield
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise HubError(f"{what}: {e.strerror or _first_line(e)}{where}") from None


# --------------------------------------------------------------------------------------------------
# Sources


class _Transient(Exception):
    """A failure worth another attempt (connection refused or reset, timeout, 5xx, short body)."""


def _sleep(seconds: float) -> None:  # one place to observe the back-off in tests
    time.sleep(seconds)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(e, http.client.IncompleteRead):
        return "the server closed the connection mid-body"
    if isinstance(e, ConnectionError):
        return f"connection lost ({_first_line(e)})"
    if isinstance(e, urllib.error.URLError):
        return _first_line(e.reason) if isinstance(e.reason, str) else _first_line(e)
    return _first_line(e)


def _with_retries(what: str, attempt: Callable[[], object], progress: Progress):
    delay = BACKOFF_S
    for i in range(RETRIES + 1):
        try:
            return attempt()
        except _Transient as e:
            last = str(e)
            if i == RETRIES:
                break
            progress(f"{what}: {last}; retrying in {delay:g}s ({i + 1}/{RETRIES})")
            _sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    raise SourceError(f"cannot fetch {what}: {last} (gave up after {RETRIES + 1} attempts)")


def _http_attempt(url: str, consume):
    from .. import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"zoo/{__version__}", "Accept-Encoding": "identity"})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - the scheme is checked
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in RETRY_STATUS:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise SourceError(f"{url}: the source answers HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
        raise _Transient(_reason(e)) from None
    with resp:
        return consume(resp)


def _read(resp):
    try:
        return resp.read(CHUNK)
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e)) from None


@dataclass(frozen=True)
class Source:
    """Where artifacts come from: ``url`` (normalized) and, for local ones, ``root``."""

    url: str
    root: Path | None = None

    @property
    def remote(self) -> bool:
        return self.root is None

    def __str__(self) -> str:
        return self.url if self.remote else str(self.root)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def _url(self, rel: str) -> str:
        return urllib.parse.urljoin(self.url, urllib.parse.quote(rel))

    def _local(self, rel: str) -> Path:
        if not self.root.is_dir():
            raise SourceError(f"source folder {self.root} does not exist (give --from or ${SOURCE_ENV}, "
                              "or run `zoo build` for the default artifacts/)")
        return contained(self.root, rel, f"source {self}")

    def read_manifest(self, progress: Progress = _quiet) -> dict:
        where = self._url(mf.MANIFEST_NAME) if self.remote else str(self.root / mf.MANIFEST_NAME)
        if self.remote:
            def consume(resp):
                buf = bytearray()
                while block := _read(resp):
                    buf += block
                    if len(buf) > MAX_MANIFEST_BYTES:
                        raise ManifestError(f"{where}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; refusing it")
                return bytes(buf)

            raw = _with_retries(where, lambda: _http_attempt(where, consume), progress)
        else:
            path = self._local(mf.MANIFEST_NAME)
            try:
                if path.stat().st_size > MAX_MANIFEST_BYTES:
                    raise ManifestError(f"{where}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; refusing it")
                raw = path.read_bytes()
            except FileNotFoundError:
                raise ManifestError(f"no manifest at {where}") from None
            except OSError as e:
                raise SourceError(f"cannot read {where}: {e.strerror or e}") from None
        return parse_manifest(raw, where)

    def fetch_into(self, rec: dict, f, progress: Progress = _quiet) -> None:
        """Write ``rec``'s file into the open binary file ``f``; raise unless size and sha256 match."""
        rel, size, sha = rec["path"], rec["bytes"], rec["sha256"]

        def stream(read_block, total_hint):
            if total_hint is not None and total_hint != size:
                raise IntegrityError(f"{rel} is {total_hint:,} bytes at {self}, the manifest says {size:,}"
                                     + ("; refusing a file larger than the manifest says" if total_hint > size else ""))
            f.seek(0)
            f.truncate()
            h, n = hashlib.sha256(), 0
            while block := read_block():
                n += len(block)
                if n > size:
                    raise IntegrityError(f"{rel}: {self} sent more than the {size:,} bytes the manifest lists; "
                                         "refusing a file larger than the manifest says")
                h.update(block)
                f.write(block)
            if n < size:
                raise _Transient(f"the transfer ended after {n:,} of {size:,} bytes")
            if h.hexdigest() != sha:
                raise IntegrityError(f"{rel} from {self} has sha256 {h.hexdigest()[:16]}..., the manifest says "
                                     f"{sha[:16]}...; rejected")

        if self.remote:
            url = self._url(rel)

            def consume(resp):
                length = resp.headers.get("Content-Length")
                stream(lambda: _read(resp), int(length) if length and length.isdigit() else None)

            _with_retries(url, lambda: _http_attempt(url, consume), progress)
            return
        path = self._local(rel)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(f"{rel} is listed in the manifest but is not a file at {self}")
            with open(path, "rb") as src:
                try:
                    stream(lambda: src.read(CHUNK), st.st_size)
                except _Transient as e:
                    raise IntegrityError(f"{rel} at {self}: {e}") from None
        except FileNotFoundError:
            raise SourceError(f"{rel} is listed in the manifest but missing at {self}") from None


def resolve_source(source: str | os.PathLike | None = None) -> Source:
    """The argument, else ``$ZOO_SOURCE``, else ``artifacts/``; ``ValueError`` for other schemes."""
    spec = os.fspath(source) if source not in (None, "") else (os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE)
    parsed = urllib.parse.urlparse(spec)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise ValueError(f"source {spec!r} has no host")
        base = spec if spec.endswith("/") else spec + "/"
        if base.endswith("/" + mf.MANIFEST_NAME + "/"):
            base = base[: -len(mf.MANIFEST_NAME) - 1]
        return Source(url=base)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"source {spec!r}: file URLs with a host are not supported")
        root = Path(urllib.request.url2pathname(parsed.path))
    elif len(scheme) > 1:
        raise ValueError(f"unsupported source {spec!r}: use an http(s):// URL, a file:// URL or a folder")
    else:
        root = Path(spec)
    root = root.expanduser()
    if root.name == mf.MANIFEST_NAME and root.is_file():
        root = root.parent
    root = root.resolve()
    return Source(url=root.as_uri() + "/", root=root)


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------------
# The cache


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    if cache_dir not in (None, ""):
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "zoo"
    return Path.home() / ".cache" / "zoo"


class Cache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_cache_dir(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"cache dir {self.root} is not a folder")

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    def blob(self, sha: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ManifestError(f"not a sha256: {sha!r}")
        return self.blobs / sha[:2] / sha

    def view(self, name: str) -> Path:
        safe_name(name)
        return contained(self.models, name, "cache view")

    def source_record(self, src: Source) -> Path:
        return self.sources / f"{src.key}.json"

    @contextlib.contextmanager
    def lock(self, progress: Progress = _quiet, shared: bool = False):
        """Hold an flock on ``<cache>/.lock`` (exclusive for writers) for the block."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another zoo process using the cache {self.root} ...")
                fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    def remove_leftovers(self) -> int:
        """Remove temporary files of killed processes (call with the exclusive lock held)."""
        n = 0
        for sub in (self.blobs, self.models, self.sources):
            if sub.is_dir():
                for p in sub.rglob(TMP_PREFIX + "*"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                        n += 1
        return n


class _Changes:
    """What one pull created, so that a failure can take it back (the cache is left as it was)."""

    def __init__(self):
        self.dirs: list[Path] = []
        self.files: list[Path] = []

    def mkdirs(self, path: Path) -> None:
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        path.mkdir(parents=True, exist_ok=True)
        self.dirs.extend(reversed(missing))

    def rollback(self) -> None:
        for f in reversed(self.files):
            with contextlib.suppress(OSError):
                f.unlink()
        for d in reversed(self.dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.files.clear()
        self.dirs.clear()


# --------------------------------------------------------------------------------------------------
# Pulling


@dataclass
class PullResult:
    name: str
    precision: str
    path: Path  # the model file in the view
    view: Path  # the view folder (an artifacts folder: manifest.json + <name>/...)
    source: str
    status: str  # "downloaded" (something was fetched) | "cached"
    files: list[dict] = field(default_factory=list)  # path, bytes, sha256, role, precision, status

    @property
    def fetched_bytes(self) -> int:
        return sum(f["bytes"] for f in self.files if f["status"] == "downloaded")

    def summary(self) -> dict:
        return {"name": self.name, "precision": self.precision, "status": self.status, "path": str(self.path),
                "view": str(self.view), "source": self.source, "fetched_bytes": self.fetched_bytes,
                "files": self.files}


def _offered(manifest: dict) -> str:
    return ", ".join(m["model"] for m in manifest["models"]) or "no models"


def _entry(manifest: dict, name: str, src: Source) -> dict:
    for m in manifest["models"]:
        if m["model"] == name:
            return m
    raise UnknownModelError(f"model {name!r} is not offered by {src}; it offers: {_offered(manifest)}")


def _model_record(entry: dict, precision: str, src: Source) -> dict:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cands = [f for f in entry["files"] if f["role"] == "model" and f["precision"] == precision]
    cands.sort(key=lambda f: (f["path"] != entry["model_path"], not f["path"].endswith(".onnx")))
    if not cands:
        have = sorted({f["precision"] for f in entry["files"] if f["role"] == "model"})
        raise UnknownModelError(f"{entry['model']} has no {precision} model at {src}; it has: {', '.join(have)}")
    return cands[0]


def _manifest(src: Source, cache: Cache, progress: Progress) -> dict:
    """The source's manifest: fetched (online), or the last verified copy in the cache (offline)."""
    if src.remote and offline():
        record = cache.source_record(src)
        try:
            raw = json.loads(record.read_bytes())["manifest"]
        except FileNotFoundError:
            raise OfflineError(f"{OFFLINE_ENV}=1 and the cache {cache.root} holds no manifest from {src}; "
                               "pull once online first") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ManifestError(f"{record}: unreadable ({_first_line(e)})") from None
        return parse_manifest(json.dumps(raw).encode(), str(record))
    try:
        return src.read_manifest(progress)
    except SourceError as e:
        if src.remote and cache.source_record(src).is_file():
            raise SourceError(f"{e}; set {OFFLINE_ENV}=1 to use what is cached") from None
        raise


def list_models(source: str | os.PathLike | None = None, *, cache_dir=None, progress: Progress = _quiet) -> list[dict]:
    """What ``source`` offers: one summary per model (name, precisions, params, sizes, hashes)."""
    src = resolve_source(source)
    manifest = _manifest(src, Cache(cache_dir), progress)
    rows = []
    for m in manifest["models"]:
        models = [f for f in m["files"] if f["role"] == "model"]
        rows.append({
            "name": m["model"],
            "flavor": m["flavor"],
            "input_dim": m["scaling"]["input_dim"],
            "num_classes": m["num_classes"],
            "params": m["params"],
            "flops": m["flops"],
            "opset_version": m["opset_version"],
            "precisions": [p for p in PRECISIONS if any(f["precision"] == p for f in models)],
            "model_bytes": m["metadata"]["model_bytes"],
            "model_sha": m["metadata"]["model_sha"],
            "tags": m["metadata"]["tags"],
            "files": {f"{f['precision']}:{f['role']}": f["bytes"] for f in m["files"]},
        })
    return rows


def pull(
    names: Iterable[str] | None = None,
    source: str | os.PathLike | None = None,
    precision: str = "fp32",
    *,
    with_test_data: bool = False,
    cache_dir=None,
    progress: Progress = _quiet,
) -> list[PullResult]:
    """Bring ``names`` (all models when None) into the cache, verified; return where they are.

    Every name and precision is checked against the source's manifest before anything is written.
    A failed model leaves the cache as it was before that model; models pulled before it stay.
    """
    src = resolve_source(source)
    cache = Cache(cache_dir)
    manifest = _manifest(src, cache, progress)
    if isinstance(names, str):
        names = [names]
    if names is not None:
        names = list(dict.fromkeys(names))
        if not names:
            raise ValueError("no model names given (pass None for every model the source offers)")
    else:
        names = [m["model"] for m in manifest["models"]]
        if not names:
            raise UnknownModelError(f"{src} offers no models")
    plans = []
    for name in names:
        entry = _entry(manifest, name, src)
        plans.append((entry, _model_record(entry, precision, src)))
    results = []
    with _file_errors(f"cannot pull into the cache {cache.root}"), cache.lock(progress):
        cache.remove_leftovers()
        for entry, model_rec in plans:
            results.append(_pull_one(src, cache, manifest, entry, model_rec, with_test_data, progress))
            if src.remote and not offline():  # what ZOO_OFFLINE=1 will work from
                _save_source_record(cache, src, manifest)
    return results


def load(
    name: str,
    source: str | os.PathLike | None = None,
    precision: str = "fp32",
    *,
    with_test_data: bool = False,
    cache_dir=None,
    progress: Progress = _quiet,
) -> Path:
    """The path of ``name``'s verified model file in the cache, pulling it first when needed.

    Cached files are re-verified against the source's manifest on every call.
    """
    return pull([name], source, precision, with_test_data=with_test_data, cache_dir=cache_dir,
                progress=progress)[0].path


def session(
    name: str,
    source: str | os.PathLike | None = None,
    providers: Iterable | None = None,
    precision: str | None = None,
    *,
    sess_options=None,
    cache_dir=None,
    batch_size: int | None = None,
    progress: Progress = _quiet,
):
    """An ``onnxruntime.InferenceSession`` on the verified model (CPU unless ``providers`` says).

    ``precision`` None: the file ``zoo bench --recommend`` recommends for ONNX Runtime at
    ``batch_size`` (the smallest measured batch when None), else fp32.

    A provider that is asked for and not available raises ``ProviderUnavailableError`` (before any
    download); it is never silently replaced by the CPU.
    """
    import onnxruntime as ort

    providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    for p in providers:
        pname = p[0] if isinstance(p, (tuple, list)) else p
        if pname not in available:
            raise ProviderUnavailableError(
                f"execution provider {pname} is not available here (available: {', '.join(available)})")
    if precision is None:
        src = resolve_source(source)
        entry = _entry(_manifest(src, Cache(cache_dir), progress), name, src)
        precision = recommended_precision(entry, batch_size) or "fp32"
    path = load(name, source, precision, cache_dir=cache_dir, progress=progress)
    try:
        return ort.InferenceSession(str(path), sess_options=sess_options, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise HubError(f"onnxruntime cannot load {path}: {_first_line(e)}") from None


def recommended_precision(entry: dict, batch_size: int | None = None) -> str | None:
    """The precision of the ONNX Runtime file an entry's ``recommended`` block names for
    ``batch_size`` (smallest batch when None); None when it recommends another runtime or nothing."""
    rows = sorted((entry.get("recommended") or {}).get("by_batch") or [], key=lambda r: r["batch_size"])
    if batch_size is not None:
        rows = [r for r in rows if r["batch_size"] == batch_size]
    if not rows or rows[0].get("runtime") != "onnxruntime":
        return None
    rec = next((f for f in entry["files"] if f["role"] == "model" and f["path"] == rows[0]["file"]), None)
    return rec["precision"] if rec and rec["precision"] in PRECISIONS else None


def _save_source_record(cache: Cache, src: Source, manifest: dict) -> None:
    record = cache.source_record(src)
    data = (json.dumps({"source": src.url, "manifest": manifest}, indent=2) + "\n").encode()
    with contextlib.suppress(OSError):
        if record.read_bytes() == data:
            return
    atomic_write_bytes(record, data)


def _pull_one(src: Source, cache: Cache, manifest: dict, entry: dict, model_rec: dict, with_test_data: bool,
              progress: Progress) -> PullResult:
    name = entry["model"]
    view = cache.view(name)
    wanted = [model_rec]
    if with_test_data:
        wanted += [f for f in entry["files"] if f["role"] in ("test_input", "test_output")]
    changes = _Changes()
    statuses: dict[str, str] = {}
    good: dict[str, Path] = {}  # relpath -> a verified copy (the view file or the blob)
    try:
        queue = list(wanted)
        while queue:
            rec = queue.pop(0)
            if rec["path"] in good:
                continue
            good[rec["path"]] = _obtain(src, cache, view, rec, changes, statuses, progress)
            if rec is model_rec:
                extra = external_data_files(good[rec["path"]], rec["path"], entry)
                queue += extra
                wanted += [r for r in extra if r not in wanted]
    except BaseException:
        changes.rollback()
        raise
    # Every file is verified: now (and only now) update the view.
    _update_view(view, manifest, entry, wanted, good, changes)
    files = [dict(rec, status=statuses[rec["path"]]) for rec in wanted]
    return PullResult(name=name, precision=model_rec["precision"], path=view / model_rec["path"], view=view,
                      source=str(src), status="downloaded" if any(f["status"] == "downloaded" for f in files)
                      else "cached", files=files)


def _obtain(src: Source, cache: Cache, view: Path, rec: dict, changes: _Changes, statuses: dict,
            progress: Progress) -> Path:
    """A verified copy of ``rec``: the view's file if it still matches, else the blob, else fetched."""
    vfile = contained(view, rec["path"], "cache view", replacing=True)
    if matches(vfile, rec):
        statuses[rec["path"]] = "cached"
        return vfile
    blob = cache.blob(rec["sha256"])
    if matches(blob, rec):
        statuses[rec["path"]] = "cached"
        return blob
    what = f"{rec['path']} ({rec['bytes'] / 1e6:.1f} MB)"
    if blob.exists() or vfile.exists():
        progress(f"cached copy of {rec['path']} does not match the manifest; fetching it again")
    if src.remote and offline():
        raise OfflineError(f"{OFFLINE_ENV}=1 and {rec['path']} is not in the cache {cache.root} "
                           "(or its copy there fails verification)")
    progress(f"fetching {what} from {src} ...")
    changes.mkdirs(blob.parent)
    existed = blob.exists()
    with atomic_path(blob) as tmp, open(tmp, "wb") as f:
        src.fetch_into(rec, f, progress)  # checks size and sha256 before the rename
    if not existed:
        changes.files.append(blob)
    statuses[rec["path"]] = "downloaded"
    return blob


def _read_view_manifest(view: Path) -> dict | None:
    try:
        return parse_manifest((view / mf.MANIFEST_NAME).read_bytes(), str(view))
    except (OSError, ZooError):
        return None


def _update_view(view: Path, manifest: dict, entry: dict, wanted: list[dict], good: dict, changes: _Changes) -> None:
    """Copy the verified files into the view and write its manifest (the entry, its present files)."""
    for rec in wanted:
        vfile = contained(view, rec["path"], "cache view", replacing=True)
        src_file = good[rec["path"]]
        if src_file != vfile:
            changes.mkdirs(vfile.parent)
            _copy_verified(src_file, vfile, rec)
    # Keep files of the same entry that an earlier pull put there (other precisions, test data).
    keep = {r["path"] for r in wanted}
    old = _read_view_manifest(view)
    if old is not None:
        old_recs = {(f["path"], f["sha256"], f["bytes"]) for m in old["models"] for f in m["files"]}
        for f in entry["files"]:
            if f["path"] not in keep and (f["path"], f["sha256"], f["bytes"]) in old_recs \
                    and matches(view / f["path"], f):
                keep.add(f["path"])
    # Files of another version (or strays) leave the view.
    for dirpath, dirnames, filenames in os.walk(view, topdown=False):
        d = Path(dirpath)
        for fn in filenames:
            rel = (d / fn).relative_to(view).as_posix()
            if rel != mf.MANIFEST_NAME and rel not in keep:
                with contextlib.suppress(OSError):
                    (d / fn).unlink()
        for dn in dirnames:
            with contextlib.suppress(OSError):
                (d / dn).rmdir() if not (d / dn).is_symlink() else (d / dn).unlink()
    view_manifest = {k: v for k, v in manifest.items() if k != "models"}
    view_manifest["models"] = [dict(entry, files=[f for f in entry["files"] if f["path"] in keep])]
    mf.validate(view_manifest, str(view / mf.MANIFEST_NAME))
    data = (json.dumps(view_manifest, indent=2) + "\n").encode()
    try:
        same = (view / mf.MANIFEST_NAME).read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(view / mf.MANIFEST_NAME, data)


# --------------------------------------------------------------------------------------------------
# The cache, for the user


def cache_list(cache_dir=None) -> dict:
    """The views in the cache (model, precisions, files, bytes) and the blob store's totals."""
    cache = Cache(cache_dir)
    views = []
    if cache.models.is_dir():
        for d in sorted(p for p in cache.models.iterdir() if p.is_dir() and not p.is_symlink()):
            m = _read_view_manifest(d)
            files = m["models"][0]["files"] if m and m["models"] else []
            views.append({
                "name": d.name,
                "view": str(d),
                "precisions": [p for p in PRECISIONS if any(f["role"] == "model" and f["precision"] == p for f in files)],
                "test_data": any(f["role"] != "model" for f in files),
                "files": len(files),
                "bytes": sum(f["bytes"] for f in files),
                "model_sha": m["models"][0]["metadata"]["model_sha"] if m and m["models"] else None,
                "readable": m is not None,
            })
    blobs = [p for p in cache.blobs.glob("*/*") if p.is_file() and not p.name.startswith(TMP_PREFIX)] \
        if cache.blobs.is_dir() else []
    return {"cache_dir": str(cache.root), "models": views, "blobs": len(blobs),
            "blob_bytes": sum(p.stat().st_size for p in blobs)}


def cache_verify(cache_dir=None, progress: Progress = _quiet) -> list[dict]:
    """Re-hash every cached file: blobs against their names, view files against their manifests.

    Returns one row per file with ``status`` ok | corrupt | missing | unreadable | leftover.
    """
    cache = Cache(cache_dir)
    rows = []
    if not cache.root.is_dir():
        return rows
    with _file_errors(f"cannot verify the cache {cache.root}"), cache.lock(progress, shared=True):
        if cache.blobs.is_dir():
            for p in sorted(cache.blobs.glob("*/*")):
                if p.name.startswith(TMP_PREFIX):
                    rows.append({"kind": "blob", "path": str(p), "status": "leftover", "detail": "temporary file"})
                    continue
                ok = p.is_file() and not p.is_symlink() and sha256_file(p) == p.name
                rows.append({"kind": "blob", "path": str(p), "status": "ok" if ok else "corrupt",
                             "detail": None if ok else "content does not hash to its name"})
        if cache.models.is_dir():
            for d in sorted(p for p in cache.models.iterdir() if p.is_dir()):
                m = _read_view_manifest(d)
                if m is None or not m["models"]:
                    rows.append({"kind": "view", "path": str(d / mf.MANIFEST_NAME), "status": "unreadable",
                                 "detail": "missing or invalid manifest"})
                    continue
                for f in m["models"][0]["files"]:
                    p = d / f["path"]
                    if not p.exists() and not p.is_symlink():
                        status, detail = "missing", "listed in the view's manifest"
                    elif matches(p, f):
                        status, detail = "ok", None
                    else:
                        status, detail = "corrupt", "size, sha256 or file type differs from the manifest"
                    rows.append({"kind": "view", "path": str(p), "status": status, "detail": detail})
    return rows


def cache_clear(names: Iterable[str] | None = None, cache_dir=None, progress: Progress = _quiet) -> dict:
    """Remove the named views (and blobs no view uses any more), or everything the zoo put there.

    Only the zoo's own folders (blobs/, models/, sources/) are touched, whatever else lives in the
    cache dir.
    """
    cache = Cache(cache_dir)
    names = list(dict.fromkeys(names or []))
    removed = {"files": 0, "bytes": 0}

    def rm_tree(path: Path):
        if path.is_symlink() or path.is_file():
            removed["files"] += 1
            removed["bytes"] += path.lstat().st_size
            path.unlink()
            return
        if path.is_dir():
            for p in path.rglob("*"):
                if p.is_file() or p.is_symlink():
                    removed["files"] += 1
                    removed["bytes"] += p.lstat().st_size
            shutil.rmtree(path)

    if not cache.root.is_dir():
        if names:
            raise HubError(f"{', '.join(names)}: not in the cache {cache.root} (it is empty)")
        return {"cache_dir": str(cache.root), "removed": [], **removed}
    with _file_errors(f"cannot clear the cache {cache.root}"), cache.lock(progress):
        if not names:
            for sub in (cache.root / "blobs", cache.models, cache.sources):
                rm_tree(sub)
            return {"cache_dir": str(cache.root), "removed": ["all"], **removed}
        cached = sorted(p.name for p in cache.models.iterdir()) if cache.models.is_dir() else []
        missing = [n for n in names if n not in cached]
        if missing:
            raise HubError(f"{', '.join(missing)}: not in the cache {cache.root}; it holds: "
                           f"{', '.join(cached) or 'nothing'}")
        for n in names:
            rm_tree(cache.view(n) if not (cache.models / n).is_symlink() else cache.models / n)
        used = set()
        for d in cache.models.iterdir() if cache.models.is_dir() else []:
            m = _read_view_manifest(d)
            used |= {f["sha256"] for mm in (m or {"models": []})["models"] for f in mm["files"]}
        if cache.blobs.is_dir():
            for p in cache.blobs.glob("*/*"):
                if p.name not in used:
                    rm_tree(p)
            for d in cache.blobs.iterdir():
                with contextlib.suppress(OSError):
                    d.rmdir()
        return {"cache_dir": str(cache.root), "removed": names, **removed}


# --------------------------------------------------------------------------------------------------
# Publishing


def publish(artifacts: str | os.PathLike = DEFAULT_SOURCE, to: str | os.PathLike | None = None,
            names: Iterable[str] | None = None, *, progress: Progress = _quiet) -> list[dict]:
    """Write a static mirror of ``artifacts`` into ``to``: manifest.json plus the files it lists.

    Every file is checked against the manifest before anything is written; only listed files are
    published; files already there with the right content are left alone (publishing again is a
    no-op). An existing mirror keeps its other models (entries of the same name are replaced).
    Returns one row per file: model, path, bytes, sha256, status (published | unchanged).
    """
    if to in (None, ""):
        raise ValueError("publish needs a destination folder (--to DIR)")
    src_root, dest = Path(artifacts).expanduser(), Path(to).expanduser()
    if not src_root.is_dir():
        raise ValueError(f"artifacts folder {src_root} does not exist")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"--to {dest} is not a folder")
    if dest.resolve() == src_root.resolve():
        raise ValueError(f"--to {dest} is the artifacts folder itself; publish into another folder")
    with _file_errors(f"cannot publish {src_root} to {dest}"):
        return _publish(src_root, dest, names, progress)


def _publish(src_root: Path, dest: Path, names, progress: Progress) -> list[dict]:
    where = str(src_root / mf.MANIFEST_NAME)
    try:
        manifest = parse_manifest((src_root / mf.MANIFEST_NAME).read_bytes(), where)
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {where}; run `zoo build` first") from None
    src = Source(url=src_root.resolve().as_uri() + "/", root=src_root.resolve())
    if names:
        entries = [_entry(manifest, n, src) for n in dict.fromkeys(names)]
    else:
        entries = list(manifest["models"])
    if not entries:
        raise HubError(f"{where} lists no models; nothing to publish")

    # 1. Check everything first: a bad file publishes nothing.
    for e in entries:
        for f in e["files"]:
            p = contained(src_root, f["path"], f"{where}: model {e['model']!r}")
            try:
                st = os.stat(p)
            except FileNotFoundError:
                raise IntegrityError(f"{f['path']} is listed in {where} but missing; nothing was published") from None
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"{f['path']} is not a regular file; nothing was published")
            if st.st_size != f["bytes"]:
                raise IntegrityError(f"{f['path']} is {st.st_size:,} bytes, {where} says {f['bytes']:,}; "
                                     "nothing was published")
            if sha256_file(p) != f["sha256"]:
                raise IntegrityError(f"{f['path']} does not match its sha256 in {where}; nothing was published")
            if f["role"] == "model":
                external_data_files(p, f["path"], e)
        progress(f"{e['model']}: {len(e['files'])} file(s) verified")

    # 2. The mirror's manifest: the existing one (if any) with these entries replaced or added.
    dest_manifest_path = dest / mf.MANIFEST_NAME
    if dest_manifest_path.exists():
        existing = parse_manifest(dest_manifest_path.read_bytes(), str(dest_manifest_path))
        models = list(existing["models"])
        for e in entries:
            idx = next((i for i, m in enumerate(models) if m["model"] == e["model"]), None)
            if idx is None:
                models.append(e)
            else:
                models[idx] = e
    else:
        models = entries
    out_manifest = {k: v for k, v in manifest.items() if k != "models"}
    out_manifest["models"] = models
    mf.validate(out_manifest, str(dest_manifest_path))

    # 3. Copy what differs (each file through a temporary name), then the manifest, last.
    return _publish_files(src_root, dest, entries, out_manifest, dest_manifest_path)


def _publish_files(src_root: Path, dest: Path, entries: list[dict], out_manifest: dict,
                   dest_manifest_path: Path) -> list[dict]:
    rows = []
    for e in entries:
        for f in e["files"]:
            target = contained(dest, f["path"], f"--to {dest}", replacing=True)
            if matches(target, f):
                status = "unchanged"
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_verified(src_root / f["path"], target, f, mode=0o644)
                status = "published"
            rows.append({"model": e["model"], "path": f["path"], "bytes": f["bytes"], "sha256": f["sha256"],
                         "role": f["role"], "precision": f["precision"], "status": status})
    data = (json.dumps(out_manifest, indent=2) + "\n").encode()
    try:
        same = dest_manifest_path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        with atomic_path(dest_manifest_path) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
    rows.append({"model": None, "path": mf.MANIFEST_NAME, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "role": "manifest", "precision": None, "status": "unchanged" if same else "published"})
    return rows
