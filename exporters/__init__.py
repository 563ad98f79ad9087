"""Export layer: PyTorch -> ONNX (dynamo), and the int8 / fp16 variants, as pure functions.

``spec`` and ``ports`` need no torch; ``onnx_export`` does, and is imported only when used.
"""

from __future__ import annotations

import importlib

from .spec import EXPORTERS, IR_VERSION, SUPPORTED_OPSETS, ExportSpec

_LAZY = {"export_model": "onnx_export", "fold_batchnorm": "onnx_export", "serialize": "onnx_export",
         "io_ports": "ports"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EXPORTERS", "IR_VERSION", "SUPPORTED_OPSETS", "ExportSpec", *_LAZY]
