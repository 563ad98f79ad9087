"""What the report's charts share (matplotlib, the ``report`` extra)."""

from __future__ import annotations

from pathlib import Path

from ..fsutil import atomic_path


def save_png(fig, path: str | Path) -> Path:
    """Write a matplotlib figure atomically, with no software tag (the bytes do not name the
    matplotlib version), and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
