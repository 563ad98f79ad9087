"""int4: weight-only 4-bit blocks, ONNX Runtime's ``MatMulNBits`` (``com.microsoft``).

Each large weight matrix is stored as signed 4-bit integers, one fp32 scale per block of
:data:`BLOCK_SIZE` inputs (symmetric); activations stay fp32 in the file. With
``accuracy_level`` 4 ONNX Runtime's CPU kernel quantises each activation block to int8 on the fly
and multiplies in integers (VNNI/AMX where the CPU has them). At batch 1 this moves half of int8's
weight bytes through a single fused kernel per layer (no separate activation-quantise node), which
is why it is a candidate: measured on B7 at batch 1 (this project's CPU, a loop of calls) 0.28x of
fp32 against 0.42x for the dynamic int8 file.

It is a new precision class, so it is never published unchecked: like the static int8 file it is
made by ``zoo bench --recommend``, measured, and recommended only when the accuracy gate passes
(trained B5-B7 on MNIST-1D lost 0.46-0.61 top-1 points, within the 1.0-point gate). The layers the
int8 variants keep in fp32 (weights under :data:`.int8.INT8_MIN_WEIGHT_ELEMENTS` elements: the
squeeze-excitation layers of small models) stay fp32 here too. ONNX Runtime only: the parity
runtimes and ONNX's reference evaluator do not implement ``MatMulNBits``.
"""

from __future__ import annotations

import contextlib
import logging

from .. import onnxio
from ..errors import ExportError
from .int8 import INT8_MIN_WEIGHT_ELEMENTS, gemm_to_matmul, int8_nodes, scope_quantizer_nodes
from .onnx_export import quiet
from .variants import copy_model, finish

PRECISION = "int4"
BLOCK_SIZE = 32  # 128 was no faster and lost more agreement (B7: 93.05 % against 94.43 %)
ACCURACY_LEVEL = 4  # int8 activations inside the kernel: the fast path on CPUs with VNNI


@contextlib.contextmanager
def _root_logging_kept():
    """ONNX Runtime's nbits quantiser calls ``logging.basicConfig(level=INFO)`` on import, which
    would leave a root handler printing every library's INFO lines for the rest of the process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def quantize_int4(model_bytes: onnxio.ModelRef, *, block_size: int = BLOCK_SIZE,
                  accuracy_level: int = ACCURACY_LEVEL, min_elements: int = INT8_MIN_WEIGHT_ELEMENTS,
                  exclude=(), search: dict | None = None) -> bytes:
    """The int4 weight-only variant of an fp32 model (bytes in, bytes out); deterministic.

    ``exclude``: MatMul node names kept fp32, and ``search``: the record written into the
    settings, both from :mod:`.quant_search`; the defaults are the fixed recipe."""
    if block_size < 16 or block_size & (block_size - 1):
        raise ExportError(f"int4: block size must be a power of two of at least 16, not {block_size}")
    fp32 = onnxio.load(model_bytes)
    prepared = gemm_to_matmul(fp32)
    skip = set(exclude)
    nodes = [n for n in int8_nodes(prepared, min_elements) if n not in skip]
    if not nodes:
        raise ExportError("int4: the model has no MatMul/Gemm with a constant weight to quantise")
    chosen = set(nodes)
    keep = [n.name for n in prepared.graph.node if n.op_type == "MatMul" and n.name not in chosen]
    with _root_logging_kept(), quiet("", "onnxruntime.quantization.matmul_nbits_quantizer"):
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )

            config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                                  accuracy_level=accuracy_level, bits=4)
            q = MatMulNBitsQuantizer(copy_model(prepared), bits=4, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, nodes_to_exclude=keep, algo_config=config)
            q.process()
            proto = q.model.model
        except Exception as e:  # the quantiser raises many types; the zoo reports one
            raise ExportError(f"int4 quantisation failed: {type(e).__name__}: {str(e)[:300]}") from e
    quantized = sum(1 for n in proto.graph.node if n.op_type == "MatMulNBits")
    if quantized != len(nodes):
        raise ExportError(f"int4: {quantized} of {len(nodes)} MatMuls were quantised")
    scope_quantizer_nodes(proto.graph)
    settings = {"method": "onnxruntime.quantization.matmul_nbits_quantizer", "op": "com.microsoft.MatMulNBits",
                "weight_bits": 4, "block_size": int(block_size), "symmetric_weights": True,
                "accuracy_level": int(accuracy_level), "activations": "fp32 in the file", "quantized_nodes": quantized,
                "min_weight_elements": int(min_elements), **({"search": search} if search is not None else {})}
    return finish(proto, fp32, PRECISION, settings, fp32_layers=sorted(skip) if search is not None else None)

