"""The artifacts manifest: read, validate against the shipped JSON Schema, update, write atomically."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

from ..errors import ManifestError
from ..fsutil import atomic_write_json
from ..versions import toolchain_versions

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(resources.files("zoo").joinpath("schema/manifest.schema.json").read_text())


def validate(manifest: dict, where: str = "manifest") -> None:
    """Raise ``ManifestError`` naming the first schema violation."""
    import jsonschema

    if isinstance(manifest, dict) and manifest.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ManifestError(
            f"{where}: unknown schema_version {manifest.get('schema_version')!r} (this zoo reads {SCHEMA_VERSION})"
        )
    try:
        jsonschema.validate(manifest, schema())
    except jsonschema.ValidationError as e:
        loc = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise ManifestError(f"{where}: invalid at {loc}: {e.message}") from None


def empty_manifest() -> dict:
    from .. import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"zoo {__version__}",
        "toolchain": toolchain_versions(),
        "models": [],
    }


def parse(text: str | bytes, where: str = "manifest") -> dict:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
    validate(data, where)
    return data


def load(path: str | Path) -> dict:
    """Read and validate a manifest; every failure is a one-line ``ManifestError``."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e.strerror}") from None
    return parse(text, str(path))


def load_or_empty(path: str | Path) -> dict:
    return load(path) if Path(path).exists() else empty_manifest()


def save(path: str | Path, manifest: dict) -> None:
    """Validate, then write atomically (temporary file in the same folder, then rename)."""
    validate(manifest, str(path))
    atomic_write_json(path, manifest)


def entry(manifest: dict, name: str) -> dict:
    for m in manifest["models"]:
        if m["model"] == name:
            return m
    names = ", ".join(m["model"] for m in manifest["models"]) or "none"
    raise ManifestError(f"model {name!r} is not in the manifest; it has: {names}")


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
    raise ManifestError(f"model {name!r} has no {precision} {role} file in the manifest")
