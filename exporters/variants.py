"""Precision variants of an fp32 artifact, and what they share.

Both are pure functions of the fp32 bytes and the pinned toolchain: nothing time- or
path-dependent is kept (the quantiser's temporary files, doc strings, producer fields are reset),
and serialisation is deterministic, so a rebuild gives the same sha256.
"""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto

from ..errors import ExportError
from ..spec import check_precision, variant_path

from .onnx_export import serialize


def copy_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def finish(proto: onnx.ModelProto, fp32: onnx.ModelProto, precision: str, settings: dict) -> bytes:
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
    from .fp16 import convert_fp16
    from .int8 import quantize_int8

    return quantize_int8(model_bytes) if precision == "int8" else convert_fp16(model_bytes)


def variant_files(art, precisions) -> dict[str, bytes]:
    """Rebuild the non-fp32 files of an :class:`zoo.builder.artifact.Artifact`: ``{relpath: bytes}``.

    ``zoo build`` writes these and ``zoo build --check`` compares them with a manifest.
    """
    return {
        variant_path(art.request.name, p): variant_bytes(art.model_bytes, p)
        for p in precisions
        if check_precision(p) != "fp32"
    }
