"""PyTorch -> ONNX export for the zoo: a declarative spec, BatchNorm folding, reproducible bytes."""

from .onnx_export import (
    EXPORTERS,
    SUPPORTED_OPSETS,
    ExportSpec,
    export_model,
    fold_batchnorm,
    io_ports,
    serialize,
)

__all__ = ["EXPORTERS", "SUPPORTED_OPSETS", "ExportSpec", "export_model", "fold_batchnorm", "io_ports", "serialize"]
