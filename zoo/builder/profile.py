"""The deployment profile: ``NAME/profile.json`` beside a model's files (role ``profile``).

For each runtime (and, where ``zoo bench --recommend`` measured it, each batch size) it names the
file to load, its sha256 and the session settings to use, so that consumers outside Python (the
Node, browser, C and C++ examples: ``--profile PATH`` / ``?profile=``) follow the zoo's evidence
instead of hard-coding ``model.onnx``. Made from the manifest entry alone:

* **verified** rows, one per runtime and version with a passing parity record: the file
  :func:`zoo.hub.attest.pick_file` picks (the fastest verified; for onnxruntime 1.16 the opset
  target, since it cannot load the default file), ``batch_size`` null (any), the settings the
  records were made with (ONNX Runtime's CPU provider, graph optimisation "all", the runtime's
  default thread count: ``threads`` null);
* **measured** rows from ``zoo bench --recommend`` (``entry["recommended"]``): per batch size the
  fastest file that passed the accuracy gate on this machine, with the threads, provider and
  optimisation level measured, and its p50 and top-1.

The layout (``profile_version`` 1)::

    {"profile_version": 1, "model": "dense_b0", "input": {"name": "input", "width": 256},
     "output": {"name": "logits", "classes": 10},
     "entries": [{"runtime": "onnxruntime", "version": "1.16.3", "batch_size": null,
                  "file": "model.opset15.onnx", "sha256": "...", "precision": "fp32", "format": "onnx",
                  "settings": {"threads": null, "execution_provider": "CPUExecutionProvider",
                               "graph_optimization_level": "all"},
                  "measured": null}, ...]}

``file`` is relative to the profile's folder. A consumer takes the entries of its runtime whose
``version`` has its own major.minor, then the one of its batch size, else the one with
``batch_size`` null; it pins the file to ``sha256`` before loading it.

Not part of the default ``zoo build`` (which stays byte-for-byte as artifacts/SHA256SUMS records):
``zoo build --profile`` and ``zoo bench --recommend`` write it. Its bytes are a function of the
entry (sorted keys, fixed order), so the same records give the same profile.
"""

from __future__ import annotations

import posixpath

from ..fsutil import json_bytes
from ..spec import PROFILE_ROLE

PROFILE_FILE = "profile.json"
PROFILE_VERSION = 1
# The settings each runtime's verification ran with (zoo.verify: backends, js, c).
_VERIFIED_SETTINGS = {
    "onnxruntime": {"threads": None, "execution_provider": "CPUExecutionProvider", "graph_optimization_level": "all"},
    "onnxruntime-node": {"threads": None, "execution_provider": "cpu", "graph_optimization_level": "all"},
    "onnxruntime-web": {"threads": 1, "execution_provider": "wasm", "graph_optimization_level": "all"},
}


def profile_path(name: str) -> str:
    return f"{name}/{PROFILE_FILE}"


def _entry_row(entry: dict, f: dict, runtime: str, version: str | None, batch, settings: dict, measured) -> dict:
    return {"runtime": runtime, "version": version, "batch_size": batch,
            "file": posixpath.relpath(f["path"], entry["model"]), "sha256": f["sha256"], "precision": f["precision"],
            "format": f.get("format", "onnx"), "settings": settings, "measured": measured}


def profile_for(entry: dict) -> dict:
    """The profile of one manifest entry (see the module docstring)."""
    from ..hub.attest import NotVerifiedError, _versions_with_records, pick_file, statements_for

    by_path = {f["path"]: f for f in entry["files"]}
    rows = []
    for runtime, versions in _versions_with_records(statements_for(entry)).items():
        for version in versions:
            try:
                f = pick_file(entry, None, runtime, version)
            except NotVerifiedError:  # verified only at another precision: nothing to say for fp32
                continue
            settings = _VERIFIED_SETTINGS.get(runtime, {"threads": None, "execution_provider": None,
                                                        "graph_optimization_level": None})
            rows.append(_entry_row(entry, f, runtime, version, None, dict(settings), None))
    rec = entry.get("recommended") or {}
    for r in rec.get("by_batch") or []:
        f = by_path.get(r.get("file") or "")
        if f is None:  # PyTorch won that batch size: no file to load
            continue
        s = r.get("settings") or {}
        settings = {"threads": rec.get("threads"), "execution_provider": s.get("provider"),
                    "graph_optimization_level": s.get("optimization")}
        measured = {"p50_ms": r.get("p50_ms"), "top1": r.get("top1"), "machine": rec.get("machine"),
                    "by": "zoo bench --recommend"}
        version = next((p.get("version") for p in entry.get("peers", []) if p.get("backend") == r.get("backend")), None)
        rows.append(_entry_row(entry, f, r["runtime"], version, int(r["batch_size"]), settings, measured))
    rows.sort(key=lambda x: (x["runtime"], x["batch_size"] is not None, x["batch_size"] or 0, str(x["version"])))
    ports = entry["metadata"]["io_ports"]
    return {
        "profile_version": PROFILE_VERSION,
        "model": entry["model"],
        "input": {"name": ports["inputs"][0]["name"], "width": int(entry["scaling"]["input_dim"])},
        "output": {"name": ports["outputs"][0]["name"], "classes": int(entry["num_classes"])},
        "entries": rows,
    }


def profile_bytes(entry: dict) -> bytes:
    return json_bytes(profile_for(entry))


def set_profile(entry: dict, staged: dict) -> None:
    """Add (or replace) the profile of ``entry`` in ``staged`` files and in its file list."""
    from .artifact import file_record

    path = profile_path(entry["model"])
    entry["files"] = [f for f in entry["files"] if f["path"] != path]
    data = profile_bytes(entry)
    staged[path] = data
    entry["files"].append(file_record(path, data, PROFILE_ROLE, "fp32"))


def profile_extra():
    """A ``zoo build`` extra (``--profile``), run last: the profile of the records just made."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        set_profile(entry, staged)
        progress(f"profile: {len(profile_for(entry)['entries'])} entries")

    return extra
