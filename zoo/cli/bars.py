"""Progress of long work on stderr: a tqdm bar per transfer on a terminal, plain lines otherwise
(CI logs get one line per file, never a stream of carriage returns)."""

from __future__ import annotations

import sys
from collections.abc import Callable


class _WithBars:
    """A progress callable (lines) that also offers ``bar(total, what)`` for byte counts."""

    def __init__(self, lines: Callable[[str], None]):
        self.lines = lines

    def __call__(self, msg: str) -> None:
        self.lines(msg)

    @staticmethod
    def bar(total: int, what: str):
        import shutil

        from tqdm import tqdm

        width = min(shutil.get_terminal_size().columns, 120)  # 80 where the terminal does not say
        return tqdm(total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                    leave=True, ncols=width, mininterval=0.2)


def with_bars(lines: Callable[[str], None]) -> Callable[[str], None]:
    """``lines`` with a bar per transfer where stderr is a terminal; ``lines`` itself elsewhere."""
    return _WithBars(lines) if sys.stderr.isatty() else lines


__all__ = ["with_bars"]
