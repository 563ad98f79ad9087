"""Running a pulled model: an ONNX Runtime session on the verified file, the recommended one by default."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..errors import ProviderUnavailableError
from ..spec import eligible
from ..spec import FILE_PRECISIONS as PRECISIONS
from .cache import Cache
from .config import Deadline, HubError, Progress, first_line, quiet
from . import plan
from .pull import load, open_source


def session(name: str, source: str | os.PathLike | None = None, providers: Iterable | None = None,
            precision: str | None = None, *, sess_options=None, cache_dir=None, batch_size: int | None = None,
            progress: Progress = quiet, lock=None, trust=None):
    """An ``onnxruntime.InferenceSession`` on the verified model (CPU unless ``providers`` says).

    ``precision`` None: the file ``zoo bench --recommend`` recommends at ``batch_size`` (the
    smallest measured batch when None); where another runtime won there, the fastest ONNX Runtime
    file that passed the same accuracy gate; else fp32.

    A provider that is asked for and not available raises ``ProviderUnavailableError`` (before any
    download); it is never silently replaced by the CPU. ``name`` may pin a version (``NAME@2``);
    ``lock`` (a lockfile) and ``trust`` (a public key) work as in :func:`zoo.hub.pull`.
    """
    import onnxruntime as ort

    providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    for p in providers:
        pname = p[0] if isinstance(p, (tuple, list)) else p
        if pname not in available:
            raise ProviderUnavailableError(
                f"execution provider {pname} is not available here (available: {', '.join(available)})")
    runtime = None
    if precision is None:
        with Cache(cache_dir) as cache:
            _, cat = open_source(source, lock, trust, cache, progress, Deadline(), [name])
            entry = plan.make(cat, [name], lock=lock, cache=cache, progress=progress)[0].entry
        precision = recommended_precision(entry, batch_size) or "fp32"
        runtime = _own_runtime(entry, precision, ort.__version__, progress)
    if runtime is not None:
        from .pull import pull

        path = pull([name], source, precision, cache_dir=cache_dir, progress=progress, lock=lock, trust=trust,
                    runtime=runtime)[0].path
    else:
        path = load(name, source, precision, cache_dir=cache_dir, progress=progress, lock=lock, trust=trust)
    try:
        return ort.InferenceSession(str(path), sess_options=sess_options, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise HubError(f"onnxruntime cannot load {path}: {first_line(e)}") from None


def _own_runtime(entry: dict, precision: str, version: str, progress: Progress) -> str | None:
    """``onnxruntime@VERSION`` when this ONNX Runtime's own records say the file of ``precision``
    fails here and another file (an older-opset target) passed: then that file is the one to open."""
    from .attest import NotVerifiedError, pick_file, statements_for, verified_runtimes

    f = next((f for f in entry["files"] if f["role"] == "model" and f["precision"] == precision), None)
    statements = statements_for(entry)
    tested = [t for s in statements if f is not None and s["subject"][0]["digest"]["sha256"] == f["sha256"]
              for t in s["predicate"]["failedTests"] if t.startswith(f"parity onnxruntime {version} ")]
    if not tested or version in verified_runtimes(statements).get(f["sha256"], {}).get("onnxruntime", []):
        return None
    try:
        picked = pick_file(entry, statements, "onnxruntime", version, precision=precision)
    except NotVerifiedError:
        return None
    progress(f"{entry['model']}: onnxruntime {version} failed on {f['path']}; opening {picked['path']}, verified "
             "there")
    return f"onnxruntime@{version}"


def recommended_precision(entry: dict, batch_size: int | None = None) -> str | None:
    """The precision of the ONNX Runtime file to open for ``batch_size`` (smallest recommended batch
    when None): the recommended one when ONNX Runtime won, else the fastest ONNX Runtime record of
    ``peers`` at that batch that passed the accuracy gate (OpenVINO winning at batch 256 does not
    leave an ONNX Runtime user with fp32 when an int8 file passed); None when there is none."""
    rows = sorted((entry.get("recommended") or {}).get("by_batch") or [], key=lambda r: r["batch_size"])
    if batch_size is not None:
        rows = [r for r in rows if r["batch_size"] == batch_size]
    if not rows:
        return None
    path = rows[0].get("file") if rows[0].get("runtime") == "onnxruntime" else None
    if path is None:
        ort = [r for r in entry.get("peers") or []
               if r.get("runtime") == "onnxruntime" and r.get("batch_size") == rows[0]["batch_size"] and eligible(r)
               and isinstance(r.get("p50_ms"), (int, float))]
        path = min(ort, key=lambda r: r["p50_ms"])["file"] if ort else None
    rec = next((f for f in entry["files"] if f["role"] == "model" and f["path"] == path), None)
    return rec["precision"] if rec and rec["precision"] in PRECISIONS else None


__all__ = ["recommended_precision", "session"]
