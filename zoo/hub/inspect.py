"""``zoo info``: what an .onnx file holds, read without running it (and without trusting it).

The file must be a non-empty regular file (a FIFO or device is refused before it is opened for
reading, so it cannot block); its nodes and tensors are counted on the wire bytes and a model with
more than :data:`MAX_ENTRIES` is refused before it is parsed (parsing a million tiny initializers
costs tens of times the file's size). The file is mapped, never read whole: its structure is
parsed from a copy of the wire without the initializers' data (their pages are never touched),
its sha256 is streamed, and ``onnx.checker`` reads the file itself; typed guards come before any
field is read. External data is reported and must
stay in the model's folder, through no link. Text that is not UTF-8 (protobuf's proto2 strings
may hold any bytes) is shown with replacement characters.

``zoo info`` also takes a model name: the fp32 model of that name in the artifacts folder's
manifest, else in the download cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from ..builder import manifest as mf
from ..errors import InputError, ZooError, cut
from ..fsutil import NotRegularFileError, open_regular
from ..onnxio import count_entries
from .cache import Cache
from .config import DEFAULT_SOURCE, UnsafePathError, first_line
from .external import external_locations, parse_model
from .onnxwire import without_initializer_data
from .paths import safe_name

MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit for one message
# Nodes and tensors (every graph, subgraph and function): zoo info refuses more before parsing, which
# bounds its memory (a million tiny initializers in 19 MB took 811 MB and 13 s to describe).
MAX_ENTRIES = 100_000


def read_regular(path: Path, what: str = "model") -> bytes:
    """The bytes of the regular, non-empty file ``path``; every failure a one-line ``ZooError``."""
    try:
        with open_regular(path) as f:  # a FIFO or device is refused without blocking
            if os.fstat(f.fileno()).st_size > MAX_MODEL_BYTES:
                raise ZooError(f"{path} is larger than {MAX_MODEL_BYTES:,} bytes; not a single-file ONNX model")
            data = f.read(MAX_MODEL_BYTES + 1)
    except NotRegularFileError:
        raise ZooError(f"{path} is not a regular file; refusing to read it as a {what}") from None
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e.strerror or first_line(e)}") from None
    if not data:
        raise ZooError(f"{path} is empty (0 bytes); not an ONNX model")
    return data


@contextlib.contextmanager
def _mapped(path: Path):
    """The regular, non-empty file ``path`` open and mapped read-only: ``(file, memoryview)``.
    Mapped, not read: only the pages a walk of the wire touches are loaded, never the weights."""
    import mmap

    try:
        with open_regular(path) as f:  # a FIFO or device is refused without blocking
            size = os.fstat(f.fileno()).st_size
            if size > MAX_MODEL_BYTES:
                raise ZooError(f"{path} is larger than {MAX_MODEL_BYTES:,} bytes; not a single-file ONNX model")
            if not size:
                raise ZooError(f"{path} is empty (0 bytes); not an ONNX model")
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
            view = memoryview(mm)
            try:
                yield f, view
            finally:
                with contextlib.suppress(BufferError):  # a slice still alive: the collector unmaps it
                    view.release()
                    mm.close()
    except NotRegularFileError:
        raise ZooError(f"{path} is not a regular file; refusing to read it as a model") from None
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e.strerror or first_line(e)}") from None


def _light(view, path: Path) -> tuple[bytes, str | None]:
    """``(the model without its initializers' data, None)``, or ``(b"", why it is refused)``:
    nodes and tensors counted on the wire first (more than MAX_ENTRIES are refused unparsed)."""
    try:
        count_entries(view, MAX_ENTRIES)
    except ValueError as e:
        return b"", f"{path}: {e}; zoo info reads models up to that (the zoo's largest has a few thousand)"
    try:
        return without_initializer_data(view), None
    except ValueError as e:
        return b"", f"{path} is not a readable ONNX model ({cut(first_line(e), 120)})"


def _sha256(f) -> str:
    """The file's sha256 in a stream (read, not through the mapping: its pages stay out of memory)."""
    h = hashlib.sha256()
    f.seek(0)
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def resolve(target: str | Path, artifacts: str | Path | None = None, cache_dir=None) -> tuple[Path, dict | None]:
    """``(model file, its manifest entry or None)`` for a path, or for a model name: the fp32
    model in ``artifacts``' manifest, else in the download cache."""
    path = Path(target)
    if os.path.lexists(path):
        return path, _entry_beside(path)
    if "/" in str(target) or str(target).endswith(".onnx"):
        raise InputError(f"{cut(str(path), 200)} does not exist")
    name = str(target)
    try:
        safe_name(name)
    except UnsafePathError:
        raise InputError(f"{cut(repr(name), 80)}: no such file, and not a model name") from None
    root = Path(artifacts) if artifacts is not None else Path(DEFAULT_SOURCE)
    if os.path.lexists(root / mf.MANIFEST_NAME):
        entry = next((m for m in mf.load(root)["models"] if m["model"] == name), None)
        if entry is not None:
            return root / entry["model_path"], entry
    with Cache(cache_dir) as cache:
        view = cache.read_view_manifest(name)
        if view is not None:
            entry = view["models"][0]
            return cache.view(name) / entry["model_path"], entry
    raise InputError(f"{name!r} is neither a file nor a model in {root / mf.MANIFEST_NAME} or the cache "
                     f"(build it, or `zoo pull {name}`)")


def _entry_beside(path: Path) -> dict | None:
    """The manifest entry listing ``path`` when it lies in an artifacts folder or a cache view
    (``ROOT/NAME/model.onnx`` with ``ROOT/manifest.json``); None otherwise or on any doubt."""
    root = path.parent.parent
    try:
        for m in mf.load(root)["models"]:
            if any((root / f["path"]) == path and f["role"] in ("model", "target") for f in m["files"]):
                return m
    except (ZooError, OSError, ValueError):
        pass
    return None


def describe(path: str | Path, entry: dict | None = None) -> dict:
    """What the model file ``path`` holds; ``entry`` (its manifest entry, when known) adds the
    parameter count of the PyTorch model it was exported from."""
    import onnx

    path = Path(path)
    with _mapped(path) as (f, view):
        size, digest = len(view), _sha256(f)
        light, refused = _light(view, path)  # the weights' pages are never read into memory
        if refused:  # raised here, not in an except block whose traceback would keep the mapping
            raise ZooError(refused)
        proto = parse_model(light, str(path))
        external = _external(proto, path)  # before the checker, which would open what they point to
        # The checker reads the file itself (once, in C++), never a copy made here. With external data
        # it is given the path, so that it looks for the data beside the model (every location was
        # checked just above); else the descriptor already open and checked (nothing swapped in since).
        own = f"/proc/self/fd/{f.fileno()}"
        try:
            onnx.checker.check_model(str(path) if external or not os.path.exists(own) else own)
        except Exception as e:  # noqa: BLE001 - ValidationError and C++ errors surface as several types
            raise ZooError(f"{path} is not a valid ONNX model ({cut(first_line(e), 160)})") from None
    if not proto.graph.node and not proto.graph.input:
        raise ZooError(f"{path} is not a readable ONNX model (empty graph)")
    try:
        from ..exporters.ports import io_ports

        ports = io_ports(proto)
        params = int(sum(_numel(t.dims) for t in proto.graph.initializer))
    except (KeyError, ValueError, TypeError, OverflowError) as e:
        raise ZooError(f"{path}: unsupported input, output or initializer type ({cut(first_line(e), 120)})") from None
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    torch_params = entry.get("params") if entry else None
    return _text({
        "path": str(path),
        "file_bytes": size,
        "sha256": digest,
        "ir_version": proto.ir_version,
        "opset": opset,
        "producer": cut(f"{_str(proto.producer_name)} {_str(proto.producer_version)}".strip(), 200),
        "domain": cut(_str(proto.domain), 200),
        "model_version": int(proto.model_version),
        "doc_string": cut(_str(proto.doc_string), 1000),
        "params": params,
        # The manifest counts the PyTorch model's parameters; the file has fewer where BatchNorm was
        # folded into the layer before it at export (its running statistics are not parameters).
        "params_pytorch": torch_params,
        "params_note": (None if torch_params is None or torch_params == params else
                        "the file's initializers; the manifest counts the PyTorch model's trainable parameters, "
                        "BatchNorm folded into the layer before it at export"),
        "nodes": len(proto.graph.node),
        "ops": sorted({n.op_type for n in proto.graph.node}),
        "inputs": ports["inputs"],
        "outputs": ports["outputs"],
        "metadata": {cut(_str(p.key), 200): cut(_str(p.value), 1000) for p in proto.metadata_props},
        "external_data": external,
        "verified_on": _verified_on(entry, digest),
    })


def _verified_on(entry: dict | None, sha: str) -> dict[str, list[str]]:
    """runtime -> versions this file (by sha256) passed parity on, from its manifest entry's records
    (what a release signs per file: zoo.hub.attest); empty without an entry."""
    if not entry:
        return {}
    from .attest import statements_for, verified_runtimes

    return {rt: sorted(v) for rt, v in sorted(verified_runtimes(statements_for(entry)).get(sha, {}).items())}


def _str(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def _text(v):
    """Every bytes value (a name that is not UTF-8) as text with replacement characters."""
    if isinstance(v, dict):
        return {_str(k): _text(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_text(x) for x in v]
    return _str(v)


def _numel(dims) -> int:
    n = 1
    for d in dims:
        if d < 0:
            raise ValueError(f"negative dimension {d}")
        n *= d
    return n


def _external(proto, path: Path) -> list[dict]:
    """Every external-data file: its location (inside the model's folder), bytes, whether present."""
    try:
        locations = external_locations(proto, str(path))
    except UnsafePathError as e:
        raise UnsafePathError(f"{e}; not opening it") from None
    out = []
    for loc in locations:
        parts = loc.split("/")
        for i in range(1, len(parts) + 1):  # no component may be a link: it could lead outside
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(path.parent.joinpath(*parts[:i])).st_mode):
                    raise UnsafePathError(f"{path}: external data {cut(repr(loc), 120)} goes through a link "
                                          f"({cut('/'.join(parts[:i]), 120)}); not opening it")
        try:
            st = os.lstat(path.parent / loc)
            present, size = stat.S_ISREG(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else None
        except OSError:
            present, size = False, None
        out.append({"location": loc, "present": present, "bytes": size})
    return out
