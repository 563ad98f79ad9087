"""Typed errors and the CLI exit status each one maps to (see the README's CLI contract).

``InputError`` (bad input, exit 2) is raised by the zoo's own validation only; it subclasses
``ValueError`` so that library callers can keep catching ``ValueError``. A ``ValueError`` from
third-party code is *not* bad input: the CLI reports it as an internal error. ``ZooError`` is a
failed job (exit 1); ``ProviderUnavailableError`` something asked for that is not here (exit 3).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + the signal's number, as shells expect


class InputError(ValueError):
    """Bad input (an unknown name, a bad option value, a missing file): the CLI exits 2."""

    exit_code = EXIT_INPUT


class UnknownNameError(InputError, LookupError):
    """A model, variant or runtime name that is not offered: bad input (exit 2)."""


class ZooError(Exception):
    """A domain failure: the CLI prints its message on one line and exits 1."""

    exit_code = EXIT_FAILED


class ExportError(ZooError):
    """Exporting a model to ONNX failed, or the result failed ``onnx.checker``."""


class ManifestError(ZooError):
    """A manifest is missing, unreadable, malformed, or of an unknown schema version."""


class NoManifestError(ManifestError, InputError):
    """No manifest where one was named (a missing file is bad input: exit 2)."""

    exit_code = EXIT_INPUT


class NotInManifestError(ManifestError, UnknownNameError):
    """A model (or a model's file) that the manifest does not list: bad input (exit 2)."""

    exit_code = EXIT_INPUT


class ParityError(ZooError):
    """An artifact disagrees with its PyTorch reference. Subclasses say at which check."""


class NameMismatchError(ParityError):
    """Input or output names differ from the export spec."""


class ShapeError(ParityError):
    """An output has the wrong shape (a batch axis that is not really dynamic fails here)."""


class AtolError(ParityError):
    """Output values differ by more than ``atol + rtol * |reference|`` somewhere."""


class ProviderUnavailableError(ZooError):
    """An execution provider or runtime was asked for and is not available here (exit 3)."""

    exit_code = EXIT_UNAVAILABLE


class BuildLockedError(ZooError):
    """Another process holds the artifacts folder's lock (and waiting for it was not asked for)."""


MAX_MESSAGE_CHARS = 300  # an error line quotes at most this much of a stranger's input


def cut(text, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (a 31 MB name is not printed whole)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[: limit - 25]}... ({len(text):,} chars)"


class WeightsError(InputError):
    """A weights file cannot be used: missing, a pickle, not safetensors, or not this network's
    (bad input: CLI exit 2)."""


class AccuracyError(ZooError):
    """An artifact loses more top-1 accuracy against PyTorch than the accuracy gate allows."""


class CalibrationError(InputError):
    """Static quantisation has no usable calibration data (no training split): bad input, exit 2.
    Random inputs are never substituted."""
