"""``zoo build --opsets A,B --ort``: the targets for older and smaller runtimes, as a build step.

Each target is an extra file of the model (role ``target``; the ORT format's operator list role
``target_config``), made from the default fp32 model (:mod:`zoo.exporters.targets`) and verified
like it: the parity matrix against PyTorch (ONNX Runtime's CPU provider at both optimisation
levels, the GPU providers and the independent runtimes installed here; the ORT format in ONNX
Runtime only, the one runtime that reads it). Parity records of a target name its file
(``file``); records without ``file`` belong to the default model file of their precision.
"""

from __future__ import annotations

import dataclasses

from ..errors import ExportError
from ..exporters.targets import (opset_path, opset_target_bytes, ort_config_path, ort_format_bytes, ort_path)
from ..spec import TARGET_CONFIG_ROLE, TARGET_ROLE
from .artifact import file_record


def target_record(path: str, data: bytes, *, fmt: str, opset: int, ir_version: int | None) -> dict:
    """A manifest ``files`` record of a target: role ``target``, fp32, its format, opset and IR version."""
    rec = file_record(path, data, TARGET_ROLE, "fp32")
    rec.update(format=fmt, opset=int(opset), **({"ir_version": int(ir_version)} if ir_version is not None else {}))
    return rec


def make_targets(art, opsets=(), ort: bool = False) -> list[tuple[dict, bytes]]:
    """``[(file record, bytes)]`` of the targets asked for, the opsets in order, then the ORT format
    and its config. Nothing is written or verified here."""
    import onnx

    from ..exporters.onnx_export import export_model, serialize
    from .artifact import onnx_metadata

    if not isinstance(art.model_ref, (bytes, bytearray)):
        raise ExportError(f"{art.request.name}: targets are single files; this model needs external data")
    model_bytes = bytes(art.model_ref)
    default_opset = art.request.spec.opset
    out: list[tuple[dict, bytes]] = []
    for opset in opsets:
        # PyTorch's exporter at that opset (then the IR version lowered): above the default opset, and for
        # the torchscript exporter at any opset (its graphs hold Identity nodes, which onnx's version
        # converter cannot take below 16); below it for dynamo, onnx's version converter where exact.
        if opset > default_opset or (art.request.spec.exporter == "torchscript" and opset != default_opset):
            spec = dataclasses.replace(art.request.spec, opset=opset)
            proto = export_model(art.model, art.request.effective_input_dim, spec,
                                 onnx_metadata(art.request, art.weights.get("sha256")), art.request.info.version)
            proto.producer_version = proto.producer_version.split("+")[0]
            source = serialize(proto)
        else:
            source = model_bytes
        data = opset_target_bytes(source, opset)
        ir = onnx.load_from_string(data).ir_version
        out.append((target_record(opset_path(art.request.name, opset), data, fmt="onnx", opset=opset,
                                  ir_version=ir), data))
    if ort:
        data, config = ort_format_bytes(model_bytes)
        path = ort_path(art.request.name)
        rec = target_record(path, data, fmt="ort", opset=default_opset, ir_version=None)
        rec["reproducible"] = False  # measured: see zoo.exporters.targets
        out.append((rec, data))
        crec = file_record(ort_config_path(art.request.name), config, TARGET_CONFIG_ROLE, "fp32")
        crec["of"] = path
        out.append((crec, config))
    return out


def verify_target(art, rec: dict, data: bytes, *, verify: bool = True, progress=lambda m: None) -> list[dict]:
    """Parity records of one target (each naming its file); raises the typed error of a failure."""
    from ..verify.backends import OrtBackend
    from ..verify.matrix import (MatrixOptions, check_backend, declared_outputs, raise_for_failures, reference_cases,
                                 run_matrix)
    from ..verify.parity import tolerance_for

    spec = art.request.spec
    say = lambda m: progress(f"{rec['path']}: {m}")  # noqa: E731
    if rec["format"] == "ort":  # only ONNX Runtime reads the ORT format; its outputs are the default file's
        options = MatrixOptions() if verify else MatrixOptions(batch_sizes=(1, 3))
        cases = reference_cases(art.model, art.request.effective_input_dim, spec.output_name, art.request.seed,
                                options)
        declared = declared_outputs(art.model_ref)
        records = [check_backend(b, data, cases, spec.input_name, "fp32", tolerance_for("fp32"), declared=declared)
                   for b in (OrtBackend(optimization="disabled"), OrtBackend(optimization="all"))]
        for r in records:
            say(f"{r['backend']}: {r['verdict']}, max abs {r['max_abs_error']}")
    else:
        options = MatrixOptions() if verify else MatrixOptions(batch_sizes=(1, 3), backends=[OrtBackend()])
        records = run_matrix(art.model, data, input_dim=art.request.effective_input_dim, seed=art.request.seed,
                             input_name=spec.input_name, output_name=spec.output_name, options=options, progress=say)
    records = [dict(r, file=rec["path"]) for r in records]
    raise_for_failures(records, f"{art.request.name} target {rec['path']}")
    return records


def targets_extra(opsets=(), ort: bool = False, *, verify: bool = True):
    """A ``zoo build`` extra: the targets asked for, verified, staged and listed with their records."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        for rec, data in make_targets(art, opsets, ort):
            if rec["role"] == TARGET_ROLE:
                progress(f"target {rec['path']} ({rec['format']}, opset {rec['opset']}) ...")
                entry["parity"].extend(verify_target(art, rec, data, verify=verify, progress=progress))
            staged[rec["path"]] = data
            entry["files"].append(rec)

    return extra


def target_files(art, entry: dict) -> dict[str, bytes]:
    """Rebuild the targets an entry lists (for ``zoo build --check``): ``{path: bytes}``."""
    recs = [f for f in entry.get("files", []) if f["role"] == TARGET_ROLE]
    opsets = tuple(f["opset"] for f in recs if f.get("format") == "onnx")
    ort = any(f.get("format") == "ort" for f in recs)
    return {rec["path"]: data for rec, data in make_targets(art, opsets, ort)} if recs else {}


def model_files_of(entry: dict) -> list[dict]:
    """Every file of an entry a runtime loads: the model files of each precision, then the targets."""
    return [f for f in entry["files"] if f["role"] in ("model", TARGET_ROLE)]

