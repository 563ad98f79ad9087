"""The ``zoo`` command line: the roof of the package. Thin commands over the library, one clear
line per error (see :mod:`zoo.cli.common` for the exit-code contract).

This module is light on purpose: the console script imports it, then :func:`main` imports Click
and every command (a few tenths of a second) inside its Ctrl-C handling, so an interrupt at any
moment after start-up is ``Error: zoo COMMAND: interrupted`` and exit 130, never a traceback.
``cli`` (the Click group) is imported from :mod:`zoo.cli.app` when it is first asked for.
"""

from __future__ import annotations

import sys

GROUPS = frozenset({"cache", "data", "export", "study", "trust"})  # commands with subcommands


def command_words(args: list[str]) -> str:
    """The command named in ``args`` as the error line shows it (``pull``, ``cache clear``),
    read without Click (which may not be imported yet)."""
    words = []
    for a in args:
        if a.startswith("-") or len(words) == (2 if words and words[0] in GROUPS else 1):
            break
        words.append(a)
    return " ".join(words)


def interrupted(args: list[str]):
    """Ctrl-C before a command runs (its own interrupt is handled by ZooGroup): one line, exit 130."""
    from .. import interrupt

    interrupt.saying(console=True)  # a second Ctrl-C must not interrupt the message
    words = command_words(args)
    sys.stderr.write(interrupt.line(f"zoo{' ' + words if words else ''}"))
    sys.stderr.flush()
    sys.exit(interrupt.EXIT_INTERRUPTED)


def main() -> None:  # console-script entry point
    args = sys.argv[1:]
    try:
        from .. import interrupt  # stdlib only

        words = command_words(args)
        interrupt.install(f"zoo{' ' + words if words else ''}")  # an interrupt is remembered, and never hangs
        from .app import cli  # click and every command: the start-up time a Ctrl-C may fall in

        cli(prog_name="zoo")
    except KeyboardInterrupt:
        interrupted(args)


def __getattr__(name: str):
    if name in ("cli", "register_commands"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
