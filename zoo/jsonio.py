"""Strict JSON: what the zoo prints or writes never holds NaN or Infinity (they become ``null``)."""

from __future__ import annotations

import math


def finite(obj):
    """``obj`` with every non-finite float replaced by None (recursively through dicts, lists, tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, *, indent: int | None = 2) -> str:
    """``json.dumps`` that never writes NaN/Infinity (``allow_nan=False`` after :func:`finite`)."""
    import json

    return json.dumps(finite(obj), indent=indent, allow_nan=False)
