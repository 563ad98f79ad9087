"""The ablation study (``zoo study ablation``): the seed material's four remaining claims, each a
comparison against B0 under the same budget, seeds and tie rule as the scaling study.

* ``se``: "MBConv + SE provides efficient attention-enhanced blocks" -- B0 against B0 without SE.
* ``activation``: "Swish offers slight improvements over ReLU" -- B0 against B0 with ReLU everywhere.
* ``baselines``: "better accuracy with ~5-10x fewer FLOPs" than a ResNet -- B0 against a plain
  residual MLP and a plain MLP at B0's FLOPs and at 4x them (sized by the analytic FLOPs counter).
* ``progressive``: progressive training -- B0 trained from a narrower input growing to 256
  features, against B0 trained at 256 from the start, for the same epochs over the same samples.

Pure Python: points and verdicts; the trials are the scaling study's.
"""

from __future__ import annotations

import math

from ..errors import InputError
from ..model.arch import Arch, BASELINE_PREFIX
from ..model.config import baseline_arch
from .plans import Point, baseline
from .report import compare
from .trials import BASE_SHAPE, Shape

CLAIMS = ("se", "activation", "baselines", "progressive")
DEFAULT_BASELINE_MULTIPLIERS = (1.0, 4.0)
DEFAULT_GROW_FROM = 128  # half of B0's 256 features in the first epoch, growing to 256 by the last


def ablation_points(claims=CLAIMS, multipliers=DEFAULT_BASELINE_MULTIPLIERS,
                    grow_from: int = DEFAULT_GROW_FROM) -> list[Point]:
    """B0, then the points each claim compares it with."""
    claims = list(dict.fromkeys(claims))
    if not claims:
        raise InputError("give at least one claim")
    for c in claims:
        if c not in CLAIMS:
            raise InputError(f"unknown claim {c!r}; valid: {', '.join(CLAIMS)}")
    for m in multipliers:
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not math.isfinite(m) or m <= 0:
            raise InputError(f"a baseline's FLOPs multiplier must be a number > 0, got {m!r}")
    b = BASE_SHAPE
    points = [baseline()]
    if "se" in claims:
        points.append(Point("no-se", "se", Shape(b.depth, b.width, b.resolution, Arch(se=False))))
    if "activation" in claims:
        points.append(Point("relu", "activation", Shape(b.depth, b.width, b.resolution, Arch(activation="relu"))))
    if "baselines" in claims:
        for body in ("residual", "plain"):
            for m in sorted(set(multipliers)):
                arch = baseline_arch(body, float(m), input_dim=b.input_dim)
                points.append(Point(f"{BASELINE_PREFIX[body]}@{m:g}x", BASELINE_PREFIX[body],
                                    Shape(b.depth, b.width, b.resolution, arch), float(m)))
    if "progressive" in claims:
        points.append(Point(f"progressive-from-{grow_from}", "progressive",
                            Shape(b.depth, b.width, b.resolution, grow_from=grow_from)))
    return points


def _held(c: dict, tie: str) -> str:
    return {"better": "held", "worse": "did not hold", "tie": tie, "untested": "untested (one seed)"}[c["verdict"]]


def claim_verdicts(rows: list[dict]) -> list[dict]:
    """One entry per claim in the study: the claim, its comparisons (B0 first), and what held."""
    base = next(r for r in rows if r["strategy"] == "baseline")
    by = {}
    for r in rows:
        by.setdefault(r["strategy"], []).append(r)
    out = []
    if "se" in by:
        c = compare(base, by["se"][0])
        out.append({"claim": "se", "statement": "Squeeze-excitation makes the MBConv blocks better",
                    "comparisons": [c], "result": _held(c, "not shown (a tie)"),
                    "cost": {"params": base["params"] - by["se"][0]["params"],
                             "flops": base["flops"] - by["se"][0]["flops"]}})
    if "activation" in by:
        c = compare(base, by["activation"][0])
        out.append({"claim": "activation", "statement": "SiLU (Swish) is slightly better than ReLU",
                    "comparisons": [c], "result": _held(c, "not shown (a tie)")})
    others = sorted(by.get("resmlp", []) + by.get("mlp", []), key=lambda r: (r["multiplier"], r["label"]))
    if others:
        parts = []
        for m in sorted({r["multiplier"] for r in others}):
            cs = [compare(base, r) for r in others if r["multiplier"] == m]
            words = [_held(c, "a tie") for c in cs]
            said = words[0] if len(set(words)) == 1 else ", ".join(f"{c['b']} {w}" for c, w in zip(cs, words))
            parts.append((f"at {m:g}x B0's FLOPs: {said}", cs))
        out.append({"claim": "baselines",
                    "statement": "B0 is more accurate than a residual MLP and an MLP of equal and of several times "
                                 "its FLOPs",
                    "comparisons": [c for _, cs in parts for c in cs], "result": "; ".join(p for p, _ in parts)})
    if "progressive" in by:
        p = by["progressive"][0]
        c = compare(p, base)
        out.append({"claim": "progressive",
                    "statement": "Progressive input width trains as well as (or better than) the final width from "
                                 "the start, at the same compute",
                    "comparisons": [c], "result": {"better": "held (better)", "tie": "held (a tie)",
                                                   "worse": "did not hold", "untested": "untested (one seed)"}
                    [c["verdict"]]})
    return out


def claim_lines(verdicts: list[dict], line) -> list[str]:
    """The report's claim-by-claim section (``line`` formats one comparison)."""
    lines = ["## Claim by claim", ""]
    for v in verdicts:
        lines.append(f"- **{v['statement']}: {v['result']}.** " + "; ".join(line(c) for c in v["comparisons"]))
        if v["claim"] == "se":
            lines[-1] += (f" (SE costs {v['cost']['params']:,} parameters and {v['cost']['flops'] / 1e6:.2f} MFLOPs "
                          f"of B0's.)")
        if v["claim"] == "progressive":
            lines[-1] += (" A narrower input only shrinks the stem of a dense network, so progressive training "
                          "saves almost no compute here: the question is only whether it helps accuracy.")
    return lines
