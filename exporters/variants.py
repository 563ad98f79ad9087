"""Precision variants of an fp32 artifact, and what they share.

Both are pure functions of the fp32 bytes and the pinned toolchain: nothing time- or
path-dependent is kept (the quantiser's temporary files, doc strings, producer fields are reset),
and serialisation is deterministic, so a rebuild gives the same sha256.
"""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto

from .. import onnxio
from ..errors import ExportError
from ..modelinfo import doc_line
from ..spec import check_precision, variant_path

from .onnx_export import seal


def copy_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def finish(proto: onnx.ModelProto, fp32: onnx.ModelProto, precision: str, settings: dict,
           fp32_layers: list[str] | None = None) -> bytes:
    """Checked, deterministic bytes with the fp32 model's identity and nothing run-specific.

    ``fp32_layers`` (a searched file, :mod:`.quant_search`): the layers its search kept in fp32,
    written as ``zoo.fp32_layers`` (comma list; ``zoo info`` shows it) beside the settings."""
    proto.ir_version = fp32.ir_version
    proto.producer_name = fp32.producer_name
    proto.producer_version = fp32.producer_version
    proto.domain = fp32.domain
    proto.model_version = fp32.model_version
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
    proto.doc_string = doc_line(meta, precision)
    meta["zoo.precision"] = precision
    meta["zoo.precision_settings"] = json.dumps(settings, sort_keys=True)
    if fp32_layers is not None:
        meta["zoo.fp32_layers"] = ",".join(fp32_layers) or "none"
    return seal(proto, meta, f"{precision} model")


def variant_bytes(model_bytes: onnxio.ModelRef, precision: str) -> bytes:
    """The model of ``precision`` made from the fp32 model (bytes, or the path of its files; fp32
    returns it unchanged), as self-contained bytes: variants over 2 GiB are not supported yet."""
    check_precision(precision)
    if precision == "fp32":
        return model_bytes
    from .fp16 import convert_fp16
    from .int8 import quantize_int8

    return quantize_int8(model_bytes) if precision == "int8" else convert_fp16(model_bytes)


def variant_layout(data: bytes, path: str, external: bool) -> dict[str, bytes]:
    """The file(s) a variant's bytes are written as: ``{path: data}``, or with ``external`` the
    model and its ``.data`` (:func:`zoo.onnxio.model_files`)."""
    return onnxio.model_files(onnx.load_from_string(data), path, True) if external else {path: data}


def variant_files(art, precisions) -> dict[str, bytes]:
    """Rebuild the non-fp32 files of an :class:`zoo.builder.artifact.Artifact`: ``{relpath: bytes}``
    (external-data files included where the artifact uses them).

    ``zoo build`` writes these and ``zoo build --check`` compares them with a manifest.
    """
    out: dict[str, bytes] = {}
    for p in precisions:
        if check_precision(p) != "fp32":
            out.update(variant_layout(variant_bytes(art.model_ref, p), variant_path(art.request.name, p),
                                      art.request.spec.external_data))
    return out
