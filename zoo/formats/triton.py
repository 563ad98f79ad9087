"""A Triton Inference Server model repository: one model per zoo model and precision.

``DIR/<name>_<precision>/config.pbtxt`` (backend ``onnxruntime``, ``max_batch_size``, the input and
output with their data types and dims without the batch axis, ``dynamic_batching``, and
``labels.txt`` named as the output's ``label_filename`` when the model carries labels), and the
model as ``<version>/model.onnx``; a model with external data is Triton's directory form,
``<version>/model.onnx/model.onnx`` with its data file beside it (the bytes are the zoo's own).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..hub.config import Progress, quiet
from ..spec import FILE_PRECISIONS, parse_precisions
from .common import Planned, Release, load_models, write_files
from .names import TRITON_MODEL_FILE, triton_model_name

DEFAULT_MAX_BATCH = 64
LABELS_FILE = "labels.txt"
# ONNX tensor types as the ports record them -> Triton's DataType names.
TRITON_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
                "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32", "tensor(int8)": "TYPE_INT8",
                "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}


def _q(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _port(port: dict, kind: str, label_file: str | None = None) -> str:
    if port["type"] not in TRITON_TYPES:
        raise InputError(f"{kind} {port['name']!r} has type {port['type']}, which Triton's model config cannot name")
    shape = port["shape"]
    if not shape or isinstance(shape[0], int):
        raise InputError(f"{kind} {port['name']!r} has no batch axis first ({shape}); Triton batching needs one")
    if not all(isinstance(d, int) for d in shape[1:]):
        raise InputError(f"{kind} {port['name']!r} has symbolic dims {shape[1:]} beyond the batch axis")
    lines = ["  {", f"    name: {_q(port['name'])}", f"    data_type: {TRITON_TYPES[port['type']]}",
             f"    dims: [ {', '.join(str(d) for d in shape[1:])} ]"]
    if label_file:
        lines.append(f"    label_filename: {_q(label_file)}")
    return "\n".join(lines + ["  }"])


def config_pbtxt(model_name: str, ports: dict, max_batch_size: int, labels: bool) -> str:
    """The model's ``config.pbtxt`` (text format of Triton's ``inference.ModelConfig``)."""
    inputs = ",\n".join(_port(p, "input") for p in ports["inputs"])
    outputs = ",\n".join(_port(p, "output", LABELS_FILE if labels and i == 0 else None)
                         for i, p in enumerate(ports["outputs"]))
    return (f"name: {_q(model_name)}\nbackend: \"onnxruntime\"\nmax_batch_size: {max_batch_size}\n"
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\ndynamic_batching {{ }}\n"
            f"version_policy: {{ latest: {{ num_versions: 1 }} }}\n")


def export_triton(artifacts: str | os.PathLike, to: str | os.PathLike, names=None, *, precisions=None,
                  max_batch_size: int = DEFAULT_MAX_BATCH, releases: dict[str, Release] | None = None,
                  progress: Progress = quiet, skipped: list[dict] | None = None) -> list[dict]:
    """Write a Triton model repository for the models of ``artifacts`` (every built precision, or
    ``precisions``). The version directory is the release's version. One row per file.

    A precision asked for that a model was not built with is left out for that model (one it has
    none of is an error); ``skipped``, when given, receives ``{model, precision}`` for each, so the
    caller can say so."""
    if to in (None, ""):
        raise InputError("a Triton export needs a destination folder (--to DIR)")
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise InputError(f"max batch size must be a positive integer, not {max_batch_size!r}")
    wanted = parse_precisions(precisions, always_fp32=False, valid=FILE_PRECISIONS) if precisions else None
    dest = Path(to).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--to {dest} is not a folder")
    rows = []
    for m in load_models(artifacts, names, releases, progress):
        recs = [r for r in m.models() if wanted is None or r["precision"] in wanted]
        if not recs:
            raise InputError(f"{m.name} has none of the precisions {', '.join(wanted)}")
        have = {r["precision"] for r in recs}
        if skipped is not None:
            skipped += [{"model": m.name, "precision": p} for p in (wanted or ()) if p not in have]
        ports = m.entry["metadata"]["io_ports"]
        for rec in recs:
            tname = triton_model_name(m.name, rec["precision"])
            data = m.data_of(rec)
            planned = []
            if data is None:
                planned.append(Planned(f"{m.version}/{TRITON_MODEL_FILE}", rec=rec, source=m.local(rec)))
            else:  # Triton's directory form; the data file keeps the name the model file gives it
                planned.append(Planned(f"{m.version}/{TRITON_MODEL_FILE}/{TRITON_MODEL_FILE}", rec=rec,
                                       source=m.local(rec)))
                planned.append(Planned(f"{m.version}/{TRITON_MODEL_FILE}/{Path(data['path']).name}", rec=data,
                                       source=m.local(data)))
            if m.labels:
                planned.append(Planned(LABELS_FILE, data=("\n".join(m.labels) + "\n").encode()))
            planned.append(Planned("config.pbtxt", data=config_pbtxt(tname, ports, max_batch_size,
                                                                     bool(m.labels)).encode()))
            rows += [dict(r, model=tname) for r in write_files(dest, tname, planned, f"--to {dest}")]
            progress(f"{tname}: Triton model {dest / tname} (version {m.version})")
    return rows
