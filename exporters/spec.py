"""The export asked for, as data (in the spirit of optimum's ``OnnxConfig``): no torch needed to read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from ..errors import InputError

EXPORTERS = ("dynamo", "torchscript")
# Opsets each exporter produces that the pinned ONNX Runtime runs; 18 is the default.
SUPPORTED_OPSETS = {"dynamo": range(18, 24), "torchscript": range(14, 21)}
# The newest IR version the pinned onnxruntime loads that both exporters' output fits in.
IR_VERSION = 10


@dataclass(frozen=True)
class ExportSpec:
    """Everything an export is asked for, as data (in the spirit of optimum's ``OnnxConfig``)."""

    opset: int = 18
    exporter: str = "dynamo"
    input_name: str = "input"
    output_name: str = "logits"
    batch_axis: str = "batch"
    export_batch: int = 2  # never 1: a batch of 1 lets an exporter specialise the axis away
    ir_version: int = IR_VERSION
    optimize: bool = True
    fold_batchnorm: bool = True
    dynamic_axes: dict = field(default_factory=dict)
    # Large tensors in ``<file>.data`` beside every model file; False: only where a file would reach
    # protobuf's 2 GiB limit (zoo.onnxio).
    external_data: bool = False

    def __post_init__(self):
        if self.exporter not in EXPORTERS:
            raise InputError(f"unknown exporter {self.exporter!r}; valid exporters: {', '.join(EXPORTERS)}")
        ops = SUPPORTED_OPSETS[self.exporter]
        if not isinstance(self.opset, int) or self.opset not in ops:
            raise InputError(
                f"opset {self.opset!r} is not supported by the {self.exporter} exporter; "
                f"choose {ops.start}..{ops.stop - 1}"
            )
        if self.export_batch < 2:
            raise InputError("export batch must be at least 2 (a batch of 1 can freeze the batch axis)")
        if not self.dynamic_axes:
            object.__setattr__(
                self, "dynamic_axes", {self.input_name: {0: self.batch_axis}, self.output_name: {0: self.batch_axis}}
            )
