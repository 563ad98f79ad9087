"""The artifacts manifest: read, validate against the shipped JSON Schema, update, write atomically."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from importlib import resources
from pathlib import Path

from ..errors import ManifestError, NoManifestError, NotInManifestError, cut
from ..fsutil import atomic_write_bytes, json_bytes, read_regular
from ..versions import toolchain_versions

SCHEMA_VERSION = 2
# Version 1 recorded time ratios (p50 / baseline p50, below 1 faster); version 2 records speed-ups
# (baseline p50 / p50, above 1 faster), the one convention of the zoo. Version 1 is read and converted.
READS_VERSIONS = (1, SCHEMA_VERSION)
_V1_RATIOS = {"ratio_vs_torch": "speedup_vs_torch", "ratio_vs_ort_fp32": "speedup_vs_ort_fp32"}
MANIFEST_NAME = "manifest.json"

# Bounds on what a manifest from a stranger may cost (a real one of B0-B7 is ~100 kB, depth 7).
MAX_MANIFEST_BYTES = 32 << 20
MAX_DEPTH = 32  # checked on the raw bytes, before json.loads can recurse
MAX_NODES = 200_000  # values of any kind; 1.3 M tiny entries stop here, before the schema runs
MAX_STRING_CHARS = 1 << 16  # any string or key; names and paths have tighter schema limits
MAX_INT = (1 << 63) - 1  # a 400-digit integer is refused, never converted
_ESCAPES = re.compile(rb"\\.", re.DOTALL)  # outside strings JSON has no backslash; removing pairs keeps it linear
_STRINGS = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]")
_EMPTY_PAIRS = re.compile(rb"\[\]|\{\}")


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(resources.files("zoo").joinpath("schema/manifest.schema.json").read_text())


def validate(manifest: dict, where: str = "manifest") -> None:
    """Raise ``ManifestError`` naming the first schema violation."""
    import jsonschema

    where = cut(where)
    _check_bounds(manifest, where)
    if isinstance(manifest, dict) and manifest.get("schema_version") not in (None, *READS_VERSIONS):
        raise ManifestError(
            f"{where}: unknown schema_version {cut(repr(manifest.get('schema_version')), 40)} "
            f"(this zoo reads {', '.join(map(str, READS_VERSIONS))})"
        )
    if isinstance(manifest, dict) and manifest.get("schema_version") == 1:
        _upgrade_v1(manifest)
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        loc = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ManifestError(f"{where}: invalid at {cut(loc, 120)}: {cut(error.message)}")
    for m in manifest["models"]:  # types are checked now; what the schema cannot say
        if [x["model"] for x in manifest["models"]].count(m["model"]) > 1:
            raise ManifestError(f"{where}: model {m['model']!r} is listed twice")
        paths = [f["path"] for f in m["files"]]
        if len(set(paths)) != len(paths):
            raise ManifestError(f"{where}: model {m['model']!r} lists a file twice")


def _upgrade_v1(manifest: dict) -> None:
    """Turn a version 1 manifest into version 2 in place: each time ratio becomes its inverse, the
    speed-up. Runs after the bounds check and before the schema, so it touches only the shapes it
    knows and leaves anything else for the schema to refuse."""
    def records(m):
        yield from (r for key in ("latency", "peers") if isinstance(m.get(key), list) for r in m[key])
        rec = m.get("recommended")
        if isinstance(rec, dict) and isinstance(rec.get("by_batch"), list):
            yield from rec["by_batch"]

    for m in manifest.get("models") if isinstance(manifest.get("models"), list) else ():
        for r in records(m) if isinstance(m, dict) else ():
            for old, new in _V1_RATIOS.items():
                if isinstance(r, dict) and old in r:
                    v = r.pop(old)
                    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(1.0 / v)
                    r[new] = 1.0 / v if ok else None
    manifest["schema_version"] = SCHEMA_VERSION


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    return cls(schema())


def _check_bounds(data, where: str) -> None:
    """Refuse more values, longer strings or larger integers than any real manifest holds, before
    the schema (whose cost grows with them) or any other code looks at them."""
    stack, nodes = [data], 0
    while stack:
        v = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ManifestError(f"{where}: more than {MAX_NODES:,} values; refusing it")
        if isinstance(v, dict):
            stack.extend(v.values())
            stack.extend(v.keys())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if len(v) > MAX_STRING_CHARS:
                raise ManifestError(f"{where}: a string of {len(v):,} characters (at most {MAX_STRING_CHARS:,}); "
                                    "refusing it")
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            if not -MAX_INT <= v <= MAX_INT:
                raise ManifestError(f"{where}: an integer out of range ({cut(str(v), 40)}); refusing it")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ManifestError(f"{where}: a non-finite number; refusing it")
        else:
            raise ManifestError(f"{where}: a {type(v).__name__} is not JSON")


def empty_manifest() -> dict:
    from .. import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"zoo {__version__}",
        "toolchain": toolchain_versions(),
        "models": [],
    }


def parse(text: str | bytes, where: str = "manifest", max_bytes: int | None = None) -> dict:
    """Bytes to a validated manifest in bounded time and memory; every failure a ``ManifestError``.

    Size first, then nesting depth on the raw bytes (json.loads recurses), then JSON (no NaN,
    Infinity or duplicate keys), then the bounds and the schema (:func:`validate`).
    """
    where = cut(where)
    limit = MAX_MANIFEST_BYTES if max_bytes is None else max_bytes
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if len(text) > limit:
        raise ManifestError(f"{where}: larger than {limit:,} bytes; refusing it")
    data = parse_json(text, where)
    validate(data, where)
    return data


def parse_json(raw: bytes, where: str, bounds: bool = False):
    """Strict JSON from a stranger in bounded time: depth checked on the raw bytes first (json.loads
    recurses), no NaN, Infinity or duplicate keys; ``bounds``: the value, string and integer bounds
    too (:func:`parse` leaves them to :func:`validate`). Every failure a ``ManifestError``."""
    _check_depth(raw, where)
    try:
        data = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, > 4300-digit integers
        raise ManifestError(f"{where}: not valid JSON ({cut(e, 160)})") from None
    if bounds:
        _check_bounds(data, where)
    return data


def _check_depth(raw: bytes, where: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH without parsing it: strip strings and everything
    but brackets, then peel innermost pairs MAX_DEPTH times (each pass runs in C)."""
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", _ESCAPES.sub(b"", raw)))
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        peeled = _EMPTY_PAIRS.sub(b"", brackets)
        if peeled == brackets:
            return  # unbalanced: json.loads says where
        brackets = peeled
    if brackets:
        raise ManifestError(f"{where}: nested deeper than {MAX_DEPTH} levels; refusing it")


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return out


def load(path: str | Path) -> dict:
    """Read and validate a manifest; every failure is a one-line ``ManifestError``."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = read_regular(path, MAX_MANIFEST_BYTES)  # a FIFO or device is refused, never read
    except FileNotFoundError:
        raise NoManifestError(f"no manifest at {path}") from None
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e.strerror or e}") from None
    except ValueError:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES:,} bytes; refusing it") from None
    return parse(text, str(path))


def load_or_empty(path: str | Path) -> dict:
    return load(path) if os.path.lexists(path) else empty_manifest()


def to_bytes(manifest: dict) -> bytes:
    """The manifest as written (the bytes a commit renames into place)."""
    return json_bytes(manifest)


def save(path: str | Path, manifest: dict) -> None:
    """Validate, then write atomically (temporary file in the same folder, then rename)."""
    validate(manifest, str(path))
    atomic_write_bytes(path, to_bytes(manifest))


def entry(manifest: dict, name: str) -> dict:
    for m in manifest["models"]:
        if m["model"] == name:
            return m
    names = ", ".join(m["model"] for m in manifest["models"]) or "none"
    raise NotInManifestError(f"model {name!r} is not in the manifest; it has: {names}")


def upsert(manifest: dict, model_entry: dict) -> dict:
    """Replace the entry of the same name (or append it), keeping every other entry as it was."""
    models = [m for m in manifest["models"] if m["model"] != model_entry["model"]]
    models.append(model_entry)
    order = {name: i for i, name in enumerate(_table_order())}
    models.sort(key=lambda m: (order.get(m["model"], len(order)), m["model"]))
    out = dict(manifest)
    out["models"] = models
    out["toolchain"] = toolchain_versions()
    return out


def _table_order() -> list[str]:
    from ..model.scaling import VARIANTS

    return list(VARIANTS)


def file_record(manifest: dict, name: str, role: str = "model", precision: str = "fp32") -> dict:
    for f in entry(manifest, name)["files"]:
        if f["role"] == role and f["precision"] == precision:
            return f
    raise NotInManifestError(f"model {name!r} has no {precision} {role} file in the manifest")
