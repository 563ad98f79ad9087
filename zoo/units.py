"""How the zoo prints a size: in the unit that keeps it readable (a 900-byte test file is
``900 B``, never ``0.0000 MB``). Decimal units (1 KB = 1000 bytes), as the MB columns were."""

from __future__ import annotations

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(n: int | float | None) -> str:
    """``900 B``, ``15.3 KB``, ``1.21 MB``, ``2.50 GB``: three significant digits (bytes whole);
    ``-`` for None."""
    if n is None:
        return "-"
    value, unit = float(n), 0
    while abs(value) >= 999.5 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    if unit == 0:
        return f"{int(n)} B"
    digits = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"


__all__ = ["human_bytes"]
