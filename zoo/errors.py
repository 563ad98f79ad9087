"""Typed errors. ``ValueError`` means bad input (CLI exit 2); ``ZooError`` a failed job (exit 1)."""

from __future__ import annotations


class ZooError(Exception):
    """A domain failure: the CLI prints its message on one line and exits 1."""


class ExportError(ZooError):
    """Exporting a model to ONNX failed, or the result failed ``onnx.checker``."""


class ManifestError(ZooError):
    """A manifest is missing, unreadable, malformed, or of an unknown schema version."""


class ParityError(ZooError):
    """An artifact disagrees with its PyTorch reference. Subclasses say at which check."""


class NameMismatchError(ParityError):
    """Input or output names differ from the export spec."""


class ShapeError(ParityError):
    """An output has the wrong shape (a batch axis that is not really dynamic fails here)."""


class AtolError(ParityError):
    """Output values differ by more than ``atol + rtol * |reference|`` somewhere."""


class ProviderUnavailableError(ZooError):
    """An execution provider or runtime was asked for and is not available here."""


class WeightsError(ValueError):
    """A weights file cannot be used: missing, a pickle, not safetensors, or not this network's
    (bad input: CLI exit 2)."""


class AccuracyError(ZooError):
    """An artifact loses more top-1 accuracy against PyTorch than the accuracy gate allows."""


class CalibrationError(ValueError):
    """Static quantisation has no usable calibration data (no training split): bad input, exit 2.
    Random inputs are never substituted."""
