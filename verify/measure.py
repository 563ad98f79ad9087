"""Measure the figures the tolerances of :mod:`zoo.verify.parity` and :mod:`zoo.verify.variants` are
set from: for every variant and precision, over the parity matrix's inputs and the test data, the
worst ``|error| / (atol + rtol |reference|)``, the atol each precision needs at its rtol, the lowest
cosine similarity and the highest relative L2 error; and, for the test data, how it relates to the
stem's weights (issue 17).

    python -m zoo.verify.measure                 # B0-B7 at full size (minutes)
    python -m zoo.verify.measure dense_b0 --input-dim 64
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

PRECISIONS = ("fp32", "int8", "fp16")


def _ort(data: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def measure(name: str, input_dim: int | None = None) -> dict:
    from zoo.exporters.variants import variant_bytes
    from zoo.verify.matrix import MatrixOptions, reference_cases
    from zoo.verify.parity import DEFAULT_TOLERANCES

    from zoo.builder.artifact import make_artifact, request_for

    art = make_artifact(request_for(name, input_dim=input_dim))
    spec = art.request.spec
    cases = reference_cases(art.model, art.request.effective_input_dim, spec.output_name, art.request.seed,
                            MatrixOptions())
    # The test data is checked (by the JavaScript runtimes) against the fp32 expected output too.
    sets = [(f"matrix b{c.batch} {c.distribution}", c.x, c.expected[spec.output_name]) for c in cases]
    sets.append(("test data", art.test_in, art.test_out))
    out: dict = {"model": name}
    for p in PRECISIONS:
        sess = _ort(variant_bytes(art.model_ref, p))
        tol = DEFAULT_TOLERANCES[p]
        ratio, need_atol, cos_min, rel_max, where = 0.0, 0.0, 1.0, 0.0, None
        test_ratio = 0.0
        for what, x, ref in sets:
            got = sess.run(None, {spec.input_name: x})[0].astype(np.float64)
            ref = ref.astype(np.float64)
            diff = np.abs(got - ref)
            r = float((diff / (tol.atol + tol.rtol * np.abs(ref))).max())
            if what == "test data":
                test_ratio = r
            if r > ratio:
                ratio, where = r, what
            need_atol = max(need_atol, float((diff - tol.rtol * np.abs(ref)).max()))
            if np.linalg.norm(ref) > 0:
                cos = float(got.ravel() @ ref.ravel() / (np.linalg.norm(got) * np.linalg.norm(ref)))
                cos_min = min(cos_min, cos)
                rel_max = max(rel_max, float(np.linalg.norm(got - ref) / np.linalg.norm(ref)))
        out[p] = {"worst_ratio": round(ratio, 4), "worst_case": where, "test_data_ratio": round(test_ratio, 4),
                  "atol_needed": round(need_atol, 5), "min_cosine": round(cos_min, 6), "max_rel_l2": round(rel_max, 5)}
    w = art.model.stem[0].weight.detach().double()
    x = torch.from_numpy(art.test_in).double()
    cos = (x @ w.T) / (x.norm(dim=1, keepdim=True) * w.norm(dim=1)[None, :])
    fresh = next(c for c in cases if c.distribution == "normal" and c.batch == max(o.batch for o in cases))
    rms = lambda a: float(np.sqrt(np.mean(np.square(a.astype(np.float64)))))
    out["test_data"] = {"max_abs_cosine_to_a_stem_row": round(float(cos.abs().max()), 4),
                        "logit_rms_over_fresh_normal": round(rms(art.test_out) / rms(fresh.expected[spec.output_name]), 3)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--input-dim", type=int, default=None)
    args = ap.parse_args(argv)
    from zoo.model.scaling import VARIANTS

    for name in args.names or list(VARIANTS):
        print(json.dumps(measure(name, args.input_dim)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
