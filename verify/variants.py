"""Parity of a precision variant (int8, fp16) against the fp32 PyTorch model, with scale-free bounds."""

from __future__ import annotations

from .matrix import (
    Case,
    MatrixOptions,
    check_backend,
    make_input,
    raise_for_failures,
    run_matrix,
)
from .parity import tolerance_for

# Scale-free bounds against the fp32 PyTorch output, on top of the element-wise tolerances of
# verify.parity (which int8's wide error spread makes loose). Measured on B0-B7 over the matrix's
# inputs: int8 cosine >= 0.9939 and relative L2 <= 0.127; fp16 cosine >= 0.99999, rel. L2 <= 0.0035.
# After issue 11/17's new weights (`python -m zoo.verify.measure dense_b0 --input-dim 64`): int8
# cosine 0.99769, rel. L2 0.068; fp16 0.999997, 0.0029 (B1-B7 to be re-measured with the same command).
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.9995, "int8": 0.99}
MAX_REL_L2 = {"fp32": 1e-3, "fp16": 0.01, "int8": 0.2}


def check_variant(art, data: bytes, precision: str, *, verify: bool = True, matrix_options=None,
                  progress=lambda m: None) -> list[dict]:
    """Parity records of a variant against the fp32 PyTorch model; raises the typed error on failure.
    With ``verify=False`` only a quick check runs (the CPU provider, one seeded batch) and no
    records are returned."""
    spec = art.request.spec
    what = f"{art.request.name} {precision}"
    if verify:
        records = run_matrix(art.model, data, input_dim=art.request.effective_input_dim, seed=art.request.seed,
                             input_name=spec.input_name, output_name=spec.output_name, precision=precision,
                             options=matrix_options or MatrixOptions(runtimes=[]), progress=progress)
    else:
        import torch

        from .backends import OrtBackend

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
