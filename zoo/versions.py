"""Installed versions: of one distribution, and of the toolchain that decides an artifact's bytes."""

from __future__ import annotations

import functools
import platform
from importlib import metadata as importlib_metadata

# The distribution's name (pip's): `zoo` on the package index is an unrelated project, so this one is
# installed as dense-zoo; the import name and the command stay `zoo`.
DISTRIBUTION = "dense-zoo"
TOOLCHAIN_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "onnx_ir", "numpy", "protobuf")


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution (pip name), or None."""
    try:
        return importlib_metadata.version(dist.replace("_", "-"))
    except importlib_metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def toolchain_versions() -> dict[str, str]:
    """Versions that decide an artifact's bytes (the constraints file pins each of them)."""
    versions = {"python": platform.python_version()}
    versions.update({name: dist_version(name) or "not installed" for name in TOOLCHAIN_PACKAGES})
    return versions


def install_hint(extra: str) -> str:
    """How to install one of the project's extras, from a checkout or the distribution."""
    return f"pip install -e '.[{extra}]' in a checkout, or '{DISTRIBUTION}[{extra}]'"
