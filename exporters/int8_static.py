"""Static int8 (QDQ): per-channel int8 weights, activation scales calibrated on the reference
task's TRAINING split (``onnxruntime.quantization.quantize_static``).

Dynamic int8 (:mod:`.int8`) measures each activation's range at run time, node by node; at batch
1 that costs more than the int8 weights save. Static scales are fixed in the file, so ONNX Runtime
fuses ``DequantizeLinear -> MatMul -> QuantizeLinear`` into integer kernels. Calibration is the
whole game: ranges from random inputs put logits off by 8-10 (issue 16), so the ranges come from
real training samples only, never from the test split the accuracy gate measures on.

Reproducible bytes: the ranges are measured by ONNX Runtime in fp32, whose last bits depend on the
CPU and thread count. Each range end is rounded *outward* to :data:`RANGE_BITS` significant bits
before the quantiser sees it, so those last bits do not reach the file (a range end would have to
sit within ~1e-6 of a grid point to flip). Everything else is :func:`.variants.finish`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .. import onnxio
from ..errors import CalibrationError, ExportError
from .int8 import INT8_MIN_WEIGHT_ELEMENTS, gemm_to_matmul, int8_nodes
from .onnx_export import quiet
from .variants import finish

PRECISION = "int8_static"
# Training samples the activation ranges are measured on (the first N of the training split: the
# split is already shuffled by its generator) and the batch they are fed in.
CALIBRATION_SAMPLES = 512
CALIBRATION_BATCH = 128
RANGE_BITS = 6


def round_outward(v: float, bits: int = RANGE_BITS) -> float:
    """``v`` rounded away from zero to ``bits`` significant bits (0 stays 0)."""
    if v == 0 or not math.isfinite(v):
        return float(v)
    e = math.floor(math.log2(abs(v))) - bits + 1
    return float(math.copysign(math.ceil(abs(v) / 2.0**e) * 2.0**e, v))


def calibration_inputs(train_x: np.ndarray | None, input_dim: int, samples: int = CALIBRATION_SAMPLES,
                       what: str = "model") -> np.ndarray:
    """The calibration batch: the first ``samples`` rows of the training split, checked.

    Raises :class:`CalibrationError` (one line) when there is no training split: random inputs are
    never a substitute."""
    if train_x is None or len(train_x) == 0:
        raise CalibrationError(f"static int8 for {what} needs the reference task's training split to calibrate "
                               f"activations; none is available (give --data FILE.npz from `zoo data mnist1d "
                               f"--input-dim {input_dim}`, or build from weights with a .train.json)")
    x = np.asarray(train_x)
    if x.ndim != 2 or x.shape[1] != input_dim:
        raise CalibrationError(f"static int8 for {what}: the training split is {list(x.shape)}, the model takes "
                               f"[n, {input_dim}]")
    if not np.isfinite(x).all():
        raise CalibrationError(f"static int8 for {what}: the training split holds NaN or Inf")
    return np.ascontiguousarray(x[:samples], dtype=np.float32)


class _Reader:
    """``CalibrationDataReader`` over fixed batches of the calibration inputs."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = CALIBRATION_BATCH):
        self.batches = [{input_name: x[i:i + batch]} for i in range(0, len(x), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.batches)


def fuse_qdq_matmuls(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``Q(x) -> DQ -> MatMul <- DQ(W)`` (and a following ``Add`` of a constant bias) becomes
    ``Q(x) -> MatMulIntegerToFloat(W)``: ONNX Runtime's fused integer kernel with the dequantisation
    and the bias in its epilogue; other consumers of ``x`` read its fp32 value. Its graph optimiser leaves a float-output QDQ ``MatMul`` as
    ``DQ(W)`` + fp32 ``Gemm``, dequantising every weight on every run. Exact: the same integer
    products and scales. Returns the model and the number of fused nodes."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    drop, replace, fused = set(), {}, 0
    for n in graph.node:
        if n.op_type != "MatMul":
            continue
        a, b = producer.get(n.input[0]), producer.get(n.input[1])
        if not (a and b and a.op_type == b.op_type == "DequantizeLinear" and len(a.input) == len(b.input) == 3
                and all(i in inits for i in b.input) and a.input[0] in producer
                and producer[a.input[0]].op_type == "QuantizeLinear"):
            continue
        inputs = [a.input[0], b.input[0], a.input[1], b.input[1], a.input[2], b.input[2]]
        out, bias_add = n.output[0], None
        users = consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Add" and out not in outputs:
            add = users[0]
            other = add.input[1] if add.input[0] == out else add.input[0]
            if other in inits:
                bias_add, out = add, add.output[0]
                inputs.append(other)
        replace[id(n)] = helper.make_node("MatMulIntegerToFloat", inputs, [out], name=f"{n.name}_int8",
                                          domain="com.microsoft")
        if bias_add is not None:
            drop.add(id(bias_add))
        for dq in (a, b):  # a DequantizeLinear that only fed this MatMul goes with it
            if len(consumers.get(dq.output[0], [])) == 1 and dq.output[0] not in outputs:
                drop.add(id(dq))
        fused += 1
    # An activation that also feeds a residual Add or the squeeze-excitation Mul keeps its fp32
    # value there: the quantiser hands those ops the Q -> DQ round trip, which costs two ops and
    # adds rounding error on a path that never runs in int8.
    rename = {}
    for n in graph.node:
        if (n.op_type == "DequantizeLinear" and id(n) not in drop and n.output[0] not in outputs
                and n.input[0] in producer and producer[n.input[0]].op_type == "QuantizeLinear"):
            rename[n.output[0]] = producer[n.input[0]].input[0]
            drop.add(id(n))
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    if fused and not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.add(domain="com.microsoft", version=1)
    return proto, fused


# Calibration methods the search may try (onnxruntime.quantization.calibrate), and their options:
# Percentile drops the top 0.01 % of |x| (outliers widen a MinMax range and coarsen every other
# value's step); Entropy picks the range that keeps the histogram's KL divergence lowest.
CALIBRATIONS = ("minmax", "percentile", "entropy")
_CALIBRATION_OPTIONS = {"minmax": {}, "percentile": {"percentile": 99.99, "num_bins": 2048},
                        "entropy": {"num_bins": 512, "num_quantized_bins": 128}}


def measure_ranges(model_path: Path, x: np.ndarray, input_name: str, tmp: Path, op_types: list[str],
                   calibration: str = "minmax") -> dict[str, tuple[float, float]]:
    """``{tensor: (low, high)}`` of every input of ``op_types`` on ``x``, each end rounded outward
    (:func:`round_outward`), measured with ONNX Runtime's calibrator of ``calibration``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if calibration not in CALIBRATIONS:
        raise ExportError(f"unknown calibration {calibration!r}; valid: {', '.join(CALIBRATIONS)}")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration]
    with quiet(""):  # the histogram calibrators print their progress
        calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(tmp / f"augmented-{calibration}.onnx"),
                                       calibrate_method=method, providers=["CPUExecutionProvider"],
                                       extra_options=dict(_CALIBRATION_OPTIONS[calibration]))
        calibrator.collect_data(_Reader(x, input_name))
        ranges = calibrator.compute_data()
    out = {}
    for name, td in ranges.data.items():
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in td.range_value)
        out[name] = (round_outward(lo), round_outward(hi))
    return out


def _tensors_data(ranges: dict[str, tuple[float, float]]):
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    return TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
        for name, (lo, hi) in sorted(ranges.items())})


def quantize_int8_static(model_bytes: onnxio.ModelRef, train_x: np.ndarray | None, *, input_name: str = "input",
                         samples: int = CALIBRATION_SAMPLES, per_channel: bool = True,
                         min_elements: int = INT8_MIN_WEIGHT_ELEMENTS, what: str = "model", fuse: bool = True,
                         calibration: str = "minmax", symmetric_activations: bool = False, exclude=(),
                         ranges: dict[str, tuple[float, float]] | None = None, search: dict | None = None) -> bytes:
    """The static int8 (QDQ) variant of an fp32 model, calibrated on ``train_x`` (training split).

    Weights: symmetric int8, one scale per output channel. Activations: int8 (symmetric is not
    forced: SiLU outputs are mostly positive), scales from the training split's min/max. Only the
    large ``MatMul``s are quantised (like the dynamic variant): the squeeze-excitation layers and
    the element-wise ops stay fp32, so the graph keeps few quantise/dequantise pairs.

    The search (:mod:`.quant_search`) varies ``calibration`` (:data:`CALIBRATIONS`),
    ``per_channel``, ``symmetric_activations`` (int8 around zero instead of uint8 with a zero
    point) and ``exclude`` (MatMul node names kept fp32), and passes the ``ranges`` it measured
    once (:func:`measure_ranges`) and its ``search`` record (written into the file's settings).
    The defaults are the fixed recipe, bytes unchanged.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    fp32 = onnxio.load(model_bytes)
    dim = fp32.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = calibration_inputs(train_x, dim, samples, what)
    prepared = gemm_to_matmul(fp32)
    skip = set(exclude)
    nodes = [n for n in int8_nodes(prepared, min_elements) if n not in skip]
    if not nodes:
        raise ExportError("int8_static: the model has no MatMul/Gemm with a constant weight to quantise")
    with tempfile.TemporaryDirectory(prefix="zoo-quantize-static-") as d, quiet(""):
        tmp = Path(d)
        src = tmp / "model.fp32.onnx"
        onnx.save(prepared, str(src))
        out = tmp / "model.int8_static.onnx"
        cache = tmp / "ranges.json"
        try:
            if ranges is None:
                ranges = measure_ranges(src, x, input_name, tmp, ["MatMul"], calibration)
            save_tensors_data(_tensors_data(ranges), cache)
            quantize_static(
                str(src), str(out), None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
                per_channel=per_channel,
                reduce_range=False,
                activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibration_cache_path=str(cache),
                extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True,
                               "OpTypesToExcludeOutputQuantization": ["MatMul"],
                               **({"ActivationSymmetric": True} if symmetric_activations else {})},
            )
        except CalibrationError:
            raise
        except Exception as e:  # the quantiser raises many types; the zoo reports one
            raise ExportError(f"int8_static quantisation failed: {type(e).__name__}: {str(e)[:300]}") from e
        proto = onnx.load(str(out), load_external_data=True)
    if fuse:
        proto, _ = fuse_qdq_matmuls(proto)
    settings = {"method": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weight_type": "int8",
                "activation_type": "int8" if symmetric_activations else "uint8", "per_channel": bool(per_channel),
                "symmetric_weights": True, "calibration": calibration, "calibration_split": "train",
                "calibration_samples": len(x), "range_bits": RANGE_BITS, "quantized_nodes": len(nodes),
                "min_weight_elements": int(min_elements), "fused": "MatMulIntegerToFloat" if fuse else None,
                **({"search": search} if search is not None else {})}
    return finish(proto, fp32, PRECISION, settings, fp32_layers=sorted(skip) if search is not None else None)
