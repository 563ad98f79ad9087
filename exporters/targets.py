"""Targets for older and smaller runtimes, made from the default fp32 model's bytes.

* **Opset targets** (``model.opset15.onnx``): the same graph declared at an older opset, with the
  lowest IR version that opset allows. ONNX Runtime 1.16 refuses today's default file for its IR
  version alone ("Unsupported model IR version: 10, max supported IR version: 9", from a real load
  in onnxruntime 1.16.3); the opset is what serving stacks cap (Triton at 15, ...). A target is
  made with ``onnx.version_converter`` and kept only where the conversion is *exact*: the converted
  graph has the same nodes (types, inputs, outputs, attributes) and the same initializer values as
  the default one, so only the declared opset and IR version change; the original graph (its
  intermediate shapes included) is written under the new declarations. An opset the converter
  cannot reach exactly (below 14: ``Mul`` has no adapter from 14 to 13) is refused, never
  approximated. Opsets above the default are exported by PyTorch's exporter itself (the caller).
* **The ONNX Runtime format** (``model.ort`` and ``model.required_operators.config``): made by
  onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``, optimisation style
  "Fixed": optimised at level "all" and saved), for mobile and minimal builds; the config is the
  converter's, minus its comment lines (which name temporary paths).

The opset targets are pure functions of the bytes and the pinned toolchain: a rebuild gives the
same sha256 (tests/test_targets.py builds twice). **The ORT format is not byte-reproducible**
(measured with the pinned onnxruntime: three conversions of the same model in one process gave
three sha256s, same size): the converter writes its kernel-type table in the iteration order of a
hash map whose order changes from run to run. Its content is the same, and so are its outputs;
the manifest marks the file ``"reproducible": false`` and ``zoo build --check`` says it does not
compare it. Its required-operators config is reproducible.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from ..errors import ExportError, InputError
from ..spec import MODEL_FILE

# The converter's adapters make the default graph (Gemm, Add, Mul, Sigmoid) exact down to opset 14.
MIN_TARGET_OPSET = 14
ORT_FILE = "model.ort"
ORT_CONFIG_FILE = "model.required_operators.config"
TARGET_META = "zoo.target"


def opset_path(name: str, opset: int) -> str:
    """``dense_b0/model.opset15.onnx``."""
    return f"{name}/model.opset{int(opset)}.onnx"


def ort_path(name: str) -> str:
    return f"{name}/{ORT_FILE}"


def ort_config_path(name: str) -> str:
    return f"{name}/{ORT_CONFIG_FILE}"


def parse_opsets(text: str | None) -> tuple[int, ...]:
    """``"15,17"`` -> ``(15, 17)``, sorted, duplicates dropped; each at least MIN_TARGET_OPSET."""
    if text is None or not str(text).strip():
        return ()
    out = set()
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise InputError(f"--opsets takes a comma list of opset numbers, got {item!r}")
        if int(item) < MIN_TARGET_OPSET:
            raise InputError(f"opset {item} is below {MIN_TARGET_OPSET}: onnx's version converter has no exact "
                             f"conversion of this model there (Mul has no adapter from 14 to 13)")
        out.add(int(item))
    return tuple(sorted(out))


def min_ir_version(proto: onnx.ModelProto) -> int:
    """The lowest IR version whose ONNX release knows every opset the model imports."""
    return helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)


def _default_opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _same_graph(a: onnx.GraphProto, b: onnx.GraphProto) -> str | None:
    """None when ``b`` computes exactly what ``a`` does (same nodes and initializer values), else why not."""
    if len(a.node) != len(b.node):
        return f"{len(a.node)} nodes became {len(b.node)}"
    for x, y in zip(a.node, b.node):
        if (x.op_type, x.domain, list(x.input), list(x.output)) != (y.op_type, y.domain, list(y.input), list(y.output)):
            return f"node {x.name or x.op_type!r} changed"
        if sorted(at.SerializeToString(deterministic=True) for at in x.attribute) != \
                sorted(at.SerializeToString(deterministic=True) for at in y.attribute):
            return f"node {x.name or x.op_type!r} changed its attributes"
    if [t.name for t in a.initializer] != [t.name for t in b.initializer]:
        return "initializers changed"
    for x, y in zip(a.initializer, b.initializer):
        if x.data_type != y.data_type or list(x.dims) != list(y.dims) or \
                numpy_helper.to_array(x).tobytes() != numpy_helper.to_array(y).tobytes():
            return f"initializer {x.name!r} changed"
    return None


def opset_target_bytes(model_bytes: bytes, opset: int) -> bytes:
    """The default model (self-contained bytes) declared at ``opset`` (at most the model's own) with the
    lowest IR version that opset allows; ``ExportError`` where the conversion would not be exact."""
    from onnx import version_converter

    from .onnx_export import seal

    proto = onnx.load_from_string(model_bytes)
    current = _default_opset(proto)
    if opset > current:
        raise InputError(f"opset {opset} is above the model's {current}: export at that opset instead (--opset)")
    if opset < MIN_TARGET_OPSET:
        raise InputError(f"opset {opset} is below {MIN_TARGET_OPSET}")
    if opset != current:
        try:
            converted = version_converter.convert_version(proto, opset)
        except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError and C++ assertion texts
            raise ExportError(f"onnx's version converter cannot take the model to opset {opset}: "
                              f"{str(e).strip().splitlines()[-1][:200]}") from None
        why = _same_graph(proto.graph, converted.graph)
        if why is not None:
            raise ExportError(f"opset {opset}: the version converter's output is not exact ({why}); not written")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for imp in out.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = opset
    out.ir_version = min_ir_version(out)
    meta = {p.key: p.value for p in out.metadata_props}
    meta[TARGET_META] = json.dumps({"format": "onnx", "opset": opset, "ir_version": out.ir_version}, sort_keys=True)
    return seal(out, meta, f"opset {opset} target")


def ort_format_bytes(model_bytes: bytes) -> tuple[bytes, bytes]:
    """``(model.ort bytes, required-operators config bytes)`` from onnxruntime's own converter."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from .onnx_export import quiet

    with tempfile.TemporaryDirectory(prefix="zoo-ort-") as tmp:
        src = Path(tmp) / MODEL_FILE
        src.write_bytes(model_bytes)
        try:
            with quiet("", "ort_format_model", "ort_format_model.utils"):
                convert_onnx_models_to_ort(src, output_dir=Path(tmp) / "out",
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as e:  # noqa: BLE001 - the converter raises what onnxruntime raises
            raise ExportError(f"onnxruntime's ORT format converter failed: {str(e).strip()[:200]}") from None
        out = Path(tmp) / "out"
        ort_files = sorted(out.glob("*.ort"))
        configs = sorted(out.glob("*.config"))
        if len(ort_files) != 1 or len(configs) != 1:
            raise ExportError(f"onnxruntime's ORT format converter wrote {[p.name for p in out.iterdir()]}, "
                              "expected one .ort and one .config")
        config = b"".join(line for line in configs[0].read_bytes().splitlines(keepends=True)
                          if not line.startswith(b"#"))
        return ort_files[0].read_bytes(), config
