"""A manifest as the hub reads it from outside: the one parser (bounded, schema first), then the
hub's checks on every entry's names and paths. Used by the sources, the plan and the cache alike, so
none of them imports another for it."""

from __future__ import annotations

from ..builder import manifest as mf
from ..errors import ManifestError, cut
from . import config
from .config import IntegrityError, UnsafePathError
from .paths import safe_relpath


def parse_manifest(raw: bytes, where: str) -> dict:
    """The one manifest parser (bounded, schema first), then the hub's checks on names and paths."""
    try:
        manifest = mf.parse(raw, where, max_bytes=config.MAX_MANIFEST_BYTES)
    except ManifestError:
        _explain_paths(raw)  # a clearer UnsafePathError when an unsafe name or path is the cause
        raise
    for m in manifest["models"]:
        check_entry(m, where)
    return manifest


VIEW_OWN = frozenset({mf.MANIFEST_NAME.casefold()})  # what a view writes beside the files it lists


def check_entry(m: dict, where: str) -> None:
    """Names and paths of a schema-valid entry: safe, and no empty model file."""
    from .paths import safe_name

    where = cut(where)
    safe_name(m["model"], f"{where}: model name")
    label = f"{where}: model {m['model']!r}"
    safe_relpath(m["model_path"], f"{label} model_path")
    seen: dict[str, dict] = {}
    for f in m["files"]:
        safe_relpath(f["path"], f"{label} file")
        if f["role"] == "model" and f["bytes"] == 0:
            raise IntegrityError(f"{label}: {f['path']} is listed as an empty (0-byte) model; refusing it")
        key = f["path"].casefold()  # a case-insensitive file system makes these one file
        if key in VIEW_OWN:
            raise UnsafePathError(f"{label} file: refusing {cut(f['path'], 120)!r}, the name of the view's own "
                                  "manifest (a listed file must never take its place)")
        other = seen.setdefault(key, f)
        if other is not f and (other["path"], other["sha256"], other["bytes"]) != (f["path"], f["sha256"], f["bytes"]):
            raise UnsafePathError(f"{label} file: {cut(f['path'], 120)!r} is listed twice with different contents")
    folders = {k.rsplit("/", i)[0] for k in seen for i in range(1, k.count("/") + 1)}
    clash = sorted(folders & set(seen))
    if clash:
        raise UnsafePathError(f"{label} file: {cut(seen[clash[0]]['path'], 120)!r} is listed both as a file and as "
                              "the folder of another file")
    for s in m["test_data"]["sets"]:
        safe_relpath(s, f"{label} test data set")


def _explain_paths(raw: bytes) -> None:
    import json

    try:
        data = json.loads(raw) if len(raw) <= config.MAX_MANIFEST_BYTES else None
    except (ValueError, RecursionError):
        return
    from .paths import safe_name

    models = data.get("models") if isinstance(data, dict) else None
    for m in models if isinstance(models, list) else []:
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("model"), str):
            safe_name(m["model"], "model name")
        for f in m.get("files") if isinstance(m.get("files"), list) else []:
            if isinstance(f, dict) and isinstance(f.get("path"), str):
                safe_relpath(f["path"], "manifest file")


__all__ = ["VIEW_OWN", "check_entry", "parse_manifest"]
