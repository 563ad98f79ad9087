"""Progress of long work on stderr: tqdm bars on a terminal, plain lines otherwise (CI logs get
lines, never a stream of carriage returns): a bar per transfer (``with_bars``, zoo pull), and a bar
over steps or models with the command's messages printed above it (``Bar``, zoo train and zoo build).
"""

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


def on_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar:
    """``total`` steps of one piece of work. On a terminal a tqdm bar (``update``, ``note``);
    elsewhere ``note`` prints lines and ``update`` prints nothing."""

    def __init__(self, total: int, desc: str, unit: str = "it", stream=None, leave: bool = True):
        self.stream = sys.stderr if stream is None else stream
        self.tty = on_terminal(self.stream)
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=leave, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def moveto(self, done: int, desc: str | None = None) -> None:
        if self.bar is not None:
            if desc is not None:
                self.bar.set_description_str(desc, refresh=False)
            self.bar.update(done - self.bar.n)

    def note(self, msg: str) -> None:
        """A message line: above the bar on a terminal, a plain line elsewhere."""
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["Bar", "on_terminal", "with_bars"]
