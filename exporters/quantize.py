"""Precision variants of an fp32 artifact: int8 (dynamic quantisation) and fp16, reproducible bytes.

* **int8** — ONNX Runtime's dynamic quantisation of the weights (``onnxruntime.quantization``):
  weights are stored as int8 (symmetric, per output channel where that lowers the error, see
  :func:`per_channel_helps`), activations are quantised to uint8 at run time. ONNX Runtime's
  dynamic quantiser handles ``MatMul`` but not ``Gemm``, so every ``Gemm(x, W, b, transB=1)`` is
  first rewritten as ``MatMul(x, W^T) + b`` (exact in fp32). The file holds standard ONNX ops only
  (``DynamicQuantizeLinear``, ``MatMulInteger``, ``Cast``, ``Mul``, ``Add``); ONNX Runtime fuses
  them into its ``DynamicQuantizeMatMul`` kernel when it loads the model.
* **fp16** — every float initializer and every computation in float16, the graph's input and
  output kept float32 with one ``Cast`` at each end, so callers feed and read the same tensors as
  with the fp32 file. Intended for GPU providers; the CPU provider runs it too (slowly).

Both are pure functions of the fp32 bytes and the pinned toolchain: nothing time- or
path-dependent is kept (the quantiser's temporary files, doc strings, producer fields are reset),
and serialisation is deterministic, so a rebuild gives the same sha256.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zoo.errors import ExportError

from .onnx_export import quiet, serialize

PRECISIONS = ("fp32", "int8", "fp16")
VARIANT_PRECISIONS = ("int8", "fp16")
FP16_MAX = float(np.finfo(np.float16).max)
# A weight matrix smaller than this stays fp32 in the int8 file: quantising its input costs more
# than its int8 weights save, and the squeeze-excitation layers it catches are the most sensitive.
INT8_MIN_WEIGHT_ELEMENTS = 4096
# Per-channel scales are used when they cut the weights' relative quantisation error by more than
# this factor. Even i.i.d. weights gain ~1.35x (column maxima differ by chance); BatchNorm-folded
# weights, whose output channels sit at different scales, gain ~1.75x (B0-B7), and there
# per-channel also lifts the output's cosine similarity (B2: 0.990 against 0.978 per-tensor).
PER_CHANNEL_GAIN = 1.5


def variant_path(name: str, precision: str) -> str:
    """The file of ``name`` at ``precision``: ``<name>/model.onnx`` for fp32, else ``model.<p>.onnx``."""
    check_precision(precision)
    return f"{name}/model.onnx" if precision == "fp32" else f"{name}/model.{precision}.onnx"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    return precision


def parse_precisions(text: str | list[str] | tuple[str, ...], always_fp32: bool = True) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")`` in table order, duplicates dropped, unknown names rejected."""
    items = text.split(",") if isinstance(text, str) else list(text)
    asked = {check_precision(p.strip().lower()) for p in items if p.strip()}
    if not asked:
        raise ValueError("give at least one precision (fp32, int8, fp16)")
    if always_fp32:
        asked.add("fp32")
    return tuple(p for p in PRECISIONS if p in asked)


# ---------------------------------------------------------------------------------------------
# int8


def gemm_to_matmul(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which ``Gemm(x, W, b)`` with constant ``W`` is ``MatMul(x, W') + b``.

    ``W'`` is ``W`` transposed when ``transB=1`` (stored once, as ``<W>_T``); ``alpha``/``beta``
    other than 1 and ``transA`` are left to the ``Gemm`` (the exporter never writes them).
    """
    proto = _copy(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    new_nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w_name = node.input[1] if node.op_type == "Gemm" and len(node.input) >= 2 else None
        if (
            w_name is None
            or w_name not in inits
            or uses.get(w_name) != 1
            or w_name in outputs
            or attrs.get("transA", 0) != 0
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
            or len(inits[w_name].dims) != 2
        ):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[w_name])
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
            new_w = numpy_helper.from_array(w, name=f"{w_name}_T")
            graph.initializer.remove(inits[w_name])
            graph.initializer.append(new_w)
            w_name = new_w.name
        has_bias = len(node.input) >= 3 and node.input[2]
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=f"{node.name}_MatMul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return proto


def _quant_rel_error(w: np.ndarray, per_channel: bool) -> float:
    """Relative L2 error of symmetric int8 rounding of ``w`` ([K, N], channels along N)."""
    amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.round(w / scale), -127, 127) * scale
    norm = np.linalg.norm(w)
    return float(np.linalg.norm(q - w) / norm) if norm > 0 else 0.0


def per_channel_helps(proto: onnx.ModelProto, nodes: list[str], gain: float = PER_CHANNEL_GAIN) -> bool:
    """Whether per-channel scales cut the mean relative weight error of ``nodes``' weights by ``gain``x.

    ONNX Runtime's dynamic quantiser takes per-channel for a whole model, not per node, so the
    choice is made once from the weights (BatchNorm folding leaves output channels at very
    different scales, which is where per-channel pays).
    """
    inits = {t.name: t for t in proto.graph.initializer}
    per_tensor, per_col = [], []
    for node in proto.graph.node:
        if node.name in nodes:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
            per_tensor.append(_quant_rel_error(w, False))
            per_col.append(_quant_rel_error(w, True))
    if not per_tensor:
        return False
    return float(np.mean(per_tensor)) > gain * float(np.mean(per_col))


def int8_nodes(proto: onnx.ModelProto, min_elements: int = INT8_MIN_WEIGHT_ELEMENTS) -> list[str]:
    """Names of the ``MatMul`` nodes worth quantising: constant weight of ``min_elements`` or more."""
    inits = {t.name: t for t in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and int(np.prod(inits[n.input[1]].dims)) >= min_elements
    ]


def quantize_int8(model_bytes: bytes, per_channel: bool | None = None,
                  min_elements: int = INT8_MIN_WEIGHT_ELEMENTS) -> bytes:
    """The int8 variant of an fp32 model (bytes in, bytes out).

    ``per_channel=None`` decides from the weights (:func:`per_channel_helps`).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = onnx.load_from_string(model_bytes)
    prepared = gemm_to_matmul(fp32)
    nodes = int8_nodes(prepared, min_elements)
    if not nodes:
        raise ExportError("int8: the model has no MatMul/Gemm with a constant weight to quantise")
    if per_channel is None:
        per_channel = per_channel_helps(prepared, nodes)
    with tempfile.TemporaryDirectory(prefix="zoo-quantize-") as tmp, quiet(""):
        out = Path(tmp) / "model.int8.onnx"
        try:
            quantize_dynamic(
                prepared,
                out,
                nodes_to_quantize=nodes,
                op_types_to_quantize=["MatMul"],
                per_channel=per_channel,
                reduce_range=False,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True},
            )
        except Exception as e:  # the quantiser raises many types; the zoo reports one
            raise ExportError(f"int8 quantisation failed: {type(e).__name__}: {str(e)[:300]}") from e
        proto = onnx.load(str(out), load_external_data=True)
    settings = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "int8", "activation_type": "uint8",
                "per_channel": bool(per_channel), "symmetric_weights": True, "quantized_nodes": len(nodes),
                "min_weight_elements": int(min_elements)}
    return _finish(proto, fp32, "int8", settings)


# ---------------------------------------------------------------------------------------------
# fp16


def _to_fp16(tensor: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(tensor)
    if np.any(np.abs(arr[np.isfinite(arr)]) > FP16_MAX):
        raise ExportError(f"fp16: {tensor.name!r} holds values beyond the float16 range ({FP16_MAX:g})")
    return numpy_helper.from_array(arr.astype(np.float16), name=tensor.name)


def convert_fp16(model_bytes: bytes) -> bytes:
    """The fp16 variant of an fp32 model: float16 weights and compute, float32 input and output."""
    fp32 = onnx.load_from_string(model_bytes)
    proto = _copy(fp32)
    graph = proto.graph
    float_t, half_t = TensorProto.FLOAT, TensorProto.FLOAT16
    for func in proto.functions:  # pragma: no cover - the exporter inlines everything
        raise ExportError(f"fp16: model functions ({func.name}) are not supported")

    for i, t in enumerate(graph.initializer):
        if t.data_type == float_t:
            graph.initializer[i].CopyFrom(_to_fp16(t))
    for node in graph.node:
        if node.op_type in ("Loop", "If", "Scan"):
            raise ExportError(f"fp16: control flow ({node.op_type}) is not supported")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == float_t:
                attr.t.CopyFrom(_to_fp16(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == float_t:
                attr.i = half_t
            if node.op_type in ("ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform") and attr.name == "dtype":
                raise ExportError(f"fp16: {node.op_type} is not supported")
    for vi in graph.value_info:
        if vi.type.tensor_type.elem_type == float_t:
            vi.type.tensor_type.elem_type = half_t

    # float32 at the edges: Cast(input) -> <input>_fp16 feeds what the input fed, and the nodes
    # that made an output make <output>_fp16, cast back to float32 under the output's name.
    head, tail = [], []
    renames: dict[str, str] = {}
    for vi in graph.input:
        if vi.type.tensor_type.elem_type == float_t and vi.name not in {t.name for t in graph.initializer}:
            renames[vi.name] = f"{vi.name}_fp16"
            head.append(helper.make_node("Cast", [vi.name], [renames[vi.name]], name=f"{vi.name}_cast_fp16", to=half_t))
    out_renames: dict[str, str] = {}
    for vi in graph.output:
        if vi.type.tensor_type.elem_type == float_t:
            out_renames[vi.name] = f"{vi.name}_fp16"
            tail.append(helper.make_node("Cast", [out_renames[vi.name]], [vi.name], name=f"{vi.name}_cast_fp32", to=float_t))
    for node in graph.node:
        for i, name in enumerate(node.input):
            name = renames.get(name, name)
            node.input[i] = out_renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = out_renames.get(name, name)
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    settings = {"method": "zoo fp16 cast", "weights": "float16", "compute": "float16", "io": "float32"}
    return _finish(proto, fp32, "fp16", settings)


# ---------------------------------------------------------------------------------------------
# common


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _finish(proto: onnx.ModelProto, fp32: onnx.ModelProto, precision: str, settings: dict) -> bytes:
    """Checked, deterministic bytes with the fp32 model's identity and nothing run-specific."""
    proto.ir_version = fp32.ir_version
    proto.producer_name = fp32.producer_name
    proto.producer_version = fp32.producer_version
    proto.domain = fp32.domain
    proto.model_version = fp32.model_version
    proto.doc_string = ""
    proto.graph.name = fp32.graph.name
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for t in proto.graph.initializer:
        t.doc_string = ""
        if t.data_location == TensorProto.EXTERNAL:  # pragma: no cover - never for models under 2 GiB
            raise ExportError(f"{precision}: {t.name!r} ended up in external data")
    # Sorted opset imports: the quantiser may add com.microsoft or bump the default opset.
    imports = sorted(((o.domain, o.version) for o in proto.opset_import))
    del proto.opset_import[:]
    for domain, version in imports:
        proto.opset_import.add(domain=domain, version=version)
    meta = {p.key: p.value for p in fp32.metadata_props}
    meta["zoo.precision"] = precision
    meta["zoo.precision_settings"] = json.dumps(settings, sort_keys=True)
    del proto.metadata_props[:]
    for key in sorted(meta):
        proto.metadata_props.add(key=key, value=meta[key])
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{precision} model fails onnx.checker: {str(e).splitlines()[0]}") from e
    return serialize(proto)


def variant_bytes(model_bytes: bytes, precision: str) -> bytes:
    """The file of ``precision`` made from the fp32 model's bytes (fp32 returns them unchanged)."""
    check_precision(precision)
    if precision == "fp32":
        return model_bytes
    return quantize_int8(model_bytes) if precision == "int8" else convert_fp16(model_bytes)


def variant_files(art, precisions) -> dict[str, bytes]:
    """Rebuild the non-fp32 files of an :class:`zoo.artifact.Artifact`: ``{relpath: bytes}``.

    ``zoo build`` writes these and ``zoo build --check`` compares them with a manifest.
    """
    return {
        variant_path(art.request.name, p): variant_bytes(art.model_bytes, p)
        for p in precisions
        if check_precision(p) != "fp32"
    }


# ---------------------------------------------------------------------------------------------
# the build step


# Scale-free bounds against the fp32 PyTorch output, on top of the element-wise tolerances of
# verify.parity (which int8's wide error spread makes loose). Measured on B0-B7 over the matrix's
# inputs: int8 cosine >= 0.9939 and relative L2 <= 0.127; fp16 cosine >= 0.99999, rel. L2 <= 0.0035.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.9995, "int8": 0.99}
MAX_REL_L2 = {"fp32": 1e-3, "fp16": 0.01, "int8": 0.2}


def precision_extra(precisions, *, verify: bool = True, matrix_options=None):
    """A ``zoo build`` extra that adds the int8/fp16 files of each model, with parity records.

    Each variant is checked against the fp32 PyTorch model with ``verify.matrix.run_matrix``
    (ONNX Runtime CPU at both optimisation levels, plus GPU providers when present); a failed
    record, a cosine similarity under :data:`MIN_COSINE` or a relative L2 error over
    :data:`MAX_REL_L2` fails the model with its typed error. With ``verify=False``
    (``zoo build --no-verify``) the same bounds are checked on the CPU provider, one seeded batch.
    """
    variants = [p for p in precisions if check_precision(p) != "fp32"]

    def extra(art, entry: dict, staged: dict, progress) -> None:
        from zoo.fsutil import sha256_bytes

        for p in variants:
            path = variant_path(art.request.name, p)
            progress(f"{p}: converting ...")
            data = variant_bytes(art.model_bytes, p)
            records = check_variant(art, data, p, verify=verify, matrix_options=matrix_options, progress=progress)
            staged[path] = data
            entry["files"].append({"path": path, "bytes": len(data), "sha256": sha256_bytes(data), "role": "model",
                                   "precision": p})
            entry["parity"].extend(records)
            progress(f"{p}: {len(data) / 1e6:.1f} MB ({len(data) / len(art.model_bytes):.0%} of fp32)")

    return extra


def check_variant(art, data: bytes, precision: str, *, verify: bool = True, matrix_options=None,
                  progress=lambda m: None) -> list[dict]:
    """Parity records of a variant against the fp32 PyTorch model; raises the typed error on failure.
    With ``verify=False`` only a quick check runs (the CPU provider, one seeded batch) and no
    records are returned."""
    from verify.matrix import Case, MatrixOptions, check_backend, make_input, raise_for_failures, run_matrix
    from verify.parity import tolerance_for

    spec = art.request.spec
    what = f"{art.request.name} {precision}"
    if verify:
        records = run_matrix(art.model, data, input_dim=art.request.effective_input_dim, seed=art.request.seed,
                             input_name=spec.input_name, output_name=spec.output_name, precision=precision,
                             options=matrix_options or MatrixOptions(runtimes=[]), progress=progress)
    else:
        import torch

        from verify.backends import OrtBackend

        x = make_input(art.request.effective_input_dim, 7, "normal", art.request.seed)
        with torch.no_grad():
            expected = art.model(torch.from_numpy(x)).numpy()
        case = Case(7, "normal", x, {spec.output_name: expected})
        records = [check_backend(OrtBackend(), data, [case], spec.input_name, precision, tolerance_for(precision))]
        what += " self-check"
    for rec in records:
        if rec["verdict"] == "pass":
            reason = _scale_free_failure(rec.get("cosine_similarity"), rec.get("rel_l2_error"), precision)
            if reason:
                rec.update(verdict="fail", failed_check="values", reason=f"{reason} against the fp32 PyTorch model")
    raise_for_failures(records, what)
    return records if verify else []


def _scale_free_failure(cos: float | None, rel_l2: float | None, precision: str) -> str | None:
    if cos is not None and cos < MIN_COSINE[precision]:
        return f"cosine similarity {cos:.4f} < {MIN_COSINE[precision]}"
    if rel_l2 is not None and rel_l2 > MAX_REL_L2[precision]:
        return f"relative L2 error {rel_l2:.3g} > {MAX_REL_L2[precision]}"
    return None

