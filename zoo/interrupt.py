"""Ctrl-C that cannot be lost: the ``zoo`` command's SIGINT handler.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be, and a library
may swallow it there: PyTorch's ONNX exporter reports it as a failed capture and tries its next
strategy, which can then succeed (a build interrupted during its export went on and wrote its
manifest, exit 0); a process can also be stuck where an exception cannot reach (a thread joined at
exit, a lock taken across the interrupt). So the handler also **remembers** the interrupt, for the
places that must not go on after one (:func:`check`: after an export, before a build commits),
and starts a watchdog: once the command has written its one line, the process has
:data:`EXIT_GRACE_S` seconds to end (only threads and exit handlers are left by then); before that,
:data:`GRACE_S` (the work that a swallowed interrupt let go on reaches its next check, then cleans
up). Past either, the watchdog writes the line unless it was written and leaves with exit 130,
without cleanup: a stuck process is worse than a leftover temporary file, which the next build or
pull removes. A second Ctrl-C leaves at once.

Stdlib only: the command's start-up installs it before anything heavy is imported.
"""

from __future__ import annotations

import os
import signal
import threading
import time

EXIT_INTERRUPTED = 130  # zoo.errors.EXIT_INTERRUPTED, repeated: nothing of the zoo is imported here
GRACE_S = 30.0  # from the interrupt: a B7 export (11 s idle) that swallowed it reaches its check
EXIT_GRACE_S = 5.0  # from the line: cleanup is done by then; exit handlers (temporary folders) are left

_state: dict = {"at": None, "said": None, "where": "zoo"}


def install(where: str = "zoo") -> None:
    """Handle SIGINT in this process (main thread only); ``where`` names the command in the line."""
    _state["where"] = where
    signal.signal(signal.SIGINT, _handler)


def _handler(signum, frame) -> None:
    if _state["at"] is not None:  # a second Ctrl-C: the user has waited enough
        _leave()
    _state["at"] = time.monotonic()
    threading.Thread(target=_watch, name="zoo-interrupt-watchdog", daemon=True).start()
    raise KeyboardInterrupt


def _watch() -> None:
    while True:
        time.sleep(0.1)
        now, said = time.monotonic(), _state["said"]
        if now - _state["at"] >= GRACE_S or (said is not None and now - said >= EXIT_GRACE_S):
            _leave()


def requested() -> bool:
    """Whether this process has been interrupted (its KeyboardInterrupt may have been swallowed)."""
    return _state["at"] is not None


def check() -> None:
    """Raise KeyboardInterrupt again if the process was interrupted: for code that must not go on
    after an interrupt some library may have turned into another exception, or into nothing."""
    if requested():
        raise KeyboardInterrupt


def line(where: str | None = None) -> str:
    return f"Error: {where or _state['where']}: interrupted\n"


def saying(console: bool = False) -> None:
    """The command's one line about the interrupt is being written: a later Ctrl-C is ignored (it
    must not cut the line) and the watchdog only exits. ``console``: this is the ``zoo`` process
    (else only where :func:`install` ran: a caller's process keeps its own Ctrl-C)."""
    if console or signal.getsignal(signal.SIGINT) is _handler:
        _state["said"] = time.monotonic()
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _leave() -> None:
    if _state["said"] is None:
        _state["said"] = time.monotonic()
        try:
            os.write(2, line().encode())
        except OSError:
            pass
    os._exit(EXIT_INTERRUPTED)
