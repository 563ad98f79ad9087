"""The parity record: one backend at one precision against one reference, as the manifest stores
it (``zoo/schema/manifest.schema.json``, ``$defs/parity``). The Python matrix and the JavaScript
runtimes (``verify/node/verify.mjs`` via :mod:`zoo.verify.js`) build their records here.
"""

from __future__ import annotations

from ..jsonio import finite
from .parity import Tolerance

VERDICTS = ("pass", "fail", "unavailable")
CHECKS = ("names", "shapes", "values")
# Error statistics of a record; each is None when unmeasured or not finite (strict JSON).
ERROR_FIELDS = ("max_abs_error", "max_rel_error", "mean_abs_error", "p99_abs_error", "cosine_similarity",
                "rel_l2_error", "top1_agreement")
FIELDS = ("backend", "runtime", "version", "provider", "optimization", "reference", "precision", "batch_sizes",
          "distributions", "output", *ERROR_FIELDS, "atol", "rtol", "verdict", "failed_check", "reason", "label",
          "compute_precision")
# OpenVINO's names of the precisions it computes in, in the zoo's words.
OPENVINO_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def ran_in(rec: dict) -> str:
    """The precision a parity or accuracy record's numbers were computed in: the file's, unless the
    runtime computed in another (``compute_precision``: OpenVINO's default runs an fp32 file in bf16
    on CPUs with AVX-512 BF16 / AMX). Reports group records by it, so a bf16 figure never counts as fp32."""
    return rec.get("compute_precision") or rec["precision"]


def computes_in(runner, precision: str) -> str | None:
    """What a loaded runner computes ``precision``'s file in, when that is a reduced precision other
    than the file's (None: the file's own)."""
    ran = getattr(runner, "computes_in", None)
    return ran if ran in ("bf16", "fp16") and ran != precision else None


def parity_record(*, backend: str, runtime: str, version: str | None, reference: str, precision: str,
                  tol: Tolerance, batch_sizes=(), distributions=(), provider: str | None = None,
                  optimization: str | None = None, verdict: str = "pass", failed_check: str | None = None,
                  reason: str | None = None, label: str | None = None, output: str | None = None,
                  **errors) -> dict:
    """A complete record in schema field order; error fields not given are None."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if failed_check not in (None, *CHECKS):
        raise ValueError(f"failed_check must be one of {CHECKS} or None, got {failed_check!r}")
    unknown = set(errors) - set(ERROR_FIELDS)
    if unknown:
        raise TypeError(f"not a parity record field: {sorted(unknown)[0]}")
    rec = {
        "backend": backend, "runtime": runtime, "version": version, "provider": provider,
        "optimization": optimization, "reference": reference, "precision": precision,
        "batch_sizes": sorted(set(batch_sizes)), "distributions": list(dict.fromkeys(distributions)),
        "output": output, **{k: finite(errors.get(k)) for k in ERROR_FIELDS},
        "atol": tol.atol, "rtol": tol.rtol, "verdict": verdict, "failed_check": failed_check, "reason": reason,
        "label": label, "compute_precision": None,
    }
    return rec
