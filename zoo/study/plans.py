"""What a study trains: named points (a strategy at a FLOPs multiplier, or a grid candidate), each a
network shape, expanded over seeds into trials. Pure Python: plans are built and checked without torch.

FLOPs are the analytic count of :meth:`NetworkConfig.flops` (matrix multiplies, per sample). In a
dense network the input width only feeds the stem (``input_dim x 32`` multiply-adds of B0's
3.8 M), so *resolution costs almost no FLOPs here*, unlike in the image network where FLOPs grow
with its square. Depth, width and compound points are placed at the multiplier by their measured
FLOPs; resolution-only points cannot be, so they take the paper's share of the budget
(``resolution x sqrt(m)``, i.e. ``gamma**2 = m``) and are charted at the FLOPs they really have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..model.scaling import BASE_RESOLUTION, PAPER_COEFFICIENTS, compound
from .trials import BASE_SHAPE, Budget, Shape, Trial

STRATEGIES = ("depth", "width", "resolution", "compound")
DEFAULT_MULTIPLIERS = (2.0, 4.0)
TARGET_PRODUCT = 2.0  # alpha * beta**2 * gamma**2 at phi = 1
PRODUCT_TOLERANCE = 0.10  # candidates within 10 % of it
# The documented grid of step 1: alpha in 1.0..2.0 by 0.2; beta and gamma in 1.0..1.4 by 0.1.
DEFAULT_GRID = {
    "alpha": (1.0, 1.2, 1.4, 1.6, 1.8, 2.0),
    "beta": (1.0, 1.1, 1.2, 1.3, 1.4),
    "gamma": (1.0, 1.1, 1.2, 1.3, 1.4),
}
# Where the one-dimensional searches look, and in what steps (finer steps change no network:
# repeats are ceil'ed and widths rounded to multiples of 8).
_SEARCH = {"depth": (1.0, 16.0, 0.01), "width": (1.0, 6.0, 0.005), "compound": (0.0, 10.0, 0.01)}


@dataclass(frozen=True)
class Point:
    """One point of a study: a label, the strategy and multiplier (or coefficients) that made it."""

    label: str
    strategy: str
    shape: Shape
    multiplier: float | None = None  # the FLOPs multiplier asked for (scaling study)
    coefficients: tuple[float, float, float] | None = None  # (alpha, beta, gamma) (grid, compound)
    phi: float | None = None

    def to_dict(self) -> dict:
        return {"label": self.label, "strategy": self.strategy, "multiplier": self.multiplier,
                "coefficients": list(self.coefficients) if self.coefficients else None, "phi": self.phi,
                "shape": self.shape.to_dict() | {"input_dim": self.shape.input_dim}}


def flops_ratio(shape: Shape) -> float:
    return shape.flops() / BASE_SHAPE.flops()


def _compound_shape(phi: float, alpha: float, beta: float, gamma: float) -> Shape:
    v = compound(phi, alpha, beta, gamma)
    return Shape(v.depth, v.width, v.resolution)


def _closest(make, lo: float, hi: float, step: float, multiplier: float) -> tuple[float, Shape]:
    """The coefficient on ``lo, lo + step, ..., hi`` whose shape's FLOPs are closest (in log) to
    ``multiplier`` x B0's: a bisection for the first step at or above it (FLOPs grow with each
    coefficient), then the nearer of it and the step below."""
    n = round((hi - lo) / step)
    at = {}

    def shape(i: int) -> Shape:
        if i not in at:
            at[i] = make(round(lo + i * step, 6))
        return at[i]

    a, b = 0, n
    while a < b:
        mid = (a + b) // 2
        if flops_ratio(shape(mid)) >= multiplier:
            b = mid
        else:
            a = mid + 1
    best = min((i for i in (a - 1, a) if 0 <= i <= n),
               key=lambda i: (abs(math.log(flops_ratio(shape(i)) / multiplier)), i))
    return round(lo + best * step, 6), shape(best)


def scaled_point(strategy: str, multiplier: float,
                 coefficients: tuple[float, float, float] = PAPER_COEFFICIENTS) -> Point:
    """``strategy`` applied to B0 at about ``multiplier`` x its FLOPs."""
    check_multiplier(multiplier)
    label = f"{strategy}@{multiplier:g}x"
    if strategy == "depth":
        _, shape = _closest(lambda d: Shape(d, 1.0, BASE_RESOLUTION), *_SEARCH["depth"], multiplier)
        return Point(label, strategy, shape, multiplier)
    if strategy == "width":
        _, shape = _closest(lambda w: Shape(1.0, w, BASE_RESOLUTION), *_SEARCH["width"], multiplier)
        return Point(label, strategy, shape, multiplier)
    if strategy == "resolution":
        return Point(label, strategy, Shape(1.0, 1.0, math.floor(BASE_RESOLUTION * math.sqrt(multiplier) + 0.5)),
                     multiplier)
    if strategy == "compound":
        phi, shape = _closest(lambda p: _compound_shape(p, *coefficients), *_SEARCH["compound"], multiplier)
        return Point(label, strategy, shape, multiplier, tuple(coefficients), phi)
    raise InputError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")


def check_multiplier(m) -> None:
    if not isinstance(m, (int, float)) or isinstance(m, bool) or not math.isfinite(m) or m <= 1.0:
        raise InputError(f"a FLOPs multiplier must be a number > 1, got {m!r}")


def check_coefficients(alpha: float, beta: float, gamma: float) -> None:
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 1.0:
            raise InputError(f"{name} must be a number >= 1, got {v!r}")


def baseline() -> Point:
    return Point("baseline", "baseline", BASE_SHAPE, 1.0)


def scaling_points(strategies=STRATEGIES, multipliers=DEFAULT_MULTIPLIERS,
                   coefficients: tuple[float, float, float] = PAPER_COEFFICIENTS) -> list[Point]:
    """B0, then every strategy at every multiplier."""
    if not strategies or not multipliers:
        raise InputError("give at least one strategy and one multiplier")
    for s in strategies:
        if s not in STRATEGIES:
            raise InputError(f"unknown strategy {s!r}; valid: {', '.join(STRATEGIES)}")
    for m in multipliers:
        check_multiplier(m)
    check_coefficients(*coefficients)
    return [baseline()] + [scaled_point(s, m, coefficients) for s in dict.fromkeys(strategies)
                           for m in sorted(set(multipliers))]


def product(alpha: float, beta: float, gamma: float) -> float:
    return alpha * beta**2 * gamma**2


def grid_candidates(alphas=DEFAULT_GRID["alpha"], betas=DEFAULT_GRID["beta"], gammas=DEFAULT_GRID["gamma"],
                    tolerance: float = PRODUCT_TOLERANCE) -> list[tuple[float, float, float]]:
    """Every triple of the grid with ``alpha * beta**2 * gamma**2`` within ``tolerance`` of 2."""
    for name, values in (("alpha", alphas), ("beta", betas), ("gamma", gammas)):
        if not values:
            raise InputError(f"the {name} grid is empty")
        for v in values:
            check_coefficients(**{"alpha": 1.0, "beta": 1.0, "gamma": 1.0, name: v})
    triples = [(a, b, g) for a in sorted(set(alphas)) for b in sorted(set(betas)) for g in sorted(set(gammas))]
    kept = [t for t in triples if abs(product(*t) - TARGET_PRODUCT) <= tolerance * TARGET_PRODUCT]
    if not kept:
        lo, hi = min(product(*t) for t in triples), max(product(*t) for t in triples)
        raise InputError(f"no (alpha, beta, gamma) of the grid has alpha*beta**2*gamma**2 within "
                         f"{tolerance:.0%} of {TARGET_PRODUCT:g} (its products span {lo:.3g} .. {hi:.3g})")
    return kept


def grid_points(alphas=DEFAULT_GRID["alpha"], betas=DEFAULT_GRID["beta"], gammas=DEFAULT_GRID["gamma"],
                reference: tuple[float, float, float] = PAPER_COEFFICIENTS) -> list[Point]:
    """B0, the reference triple, and every grid candidate, each at phi = 1."""
    check_coefficients(*reference)
    triples = list(dict.fromkeys([tuple(reference), *grid_candidates(alphas, betas, gammas)]))
    points = [baseline()]
    for t in triples:
        label = f"a{t[0]:g}-b{t[1]:g}-g{t[2]:g}"
        points.append(Point(label, "reference" if t == tuple(reference) else "candidate",
                            _compound_shape(1.0, *t), coefficients=t, phi=1.0))
    return points


def trials_for(points: list[Point], seeds: int, budget: Budget) -> list[Trial]:
    """Each distinct shape once per seed (points that share a shape share its trials)."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise InputError(f"seeds must be a positive integer, got {seeds!r}")
    shapes = dict.fromkeys(p.shape for p in points)
    return [Trial(shape, seed, budget) for shape in shapes for seed in range(seeds)]
