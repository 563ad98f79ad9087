"""The compound-scaling table: one typed source of truth for every dense variant.

Stages are written once, for B0, as rows of a frozen dataclass; every other variant's stages
come out of :func:`scaled_stages`, a pure function of ``(width, depth)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError
from .arch import Arch, parse_name

BASE_STEM = 32
BASE_HEAD = 1280
BASE_INPUT_DIM = 256
BASE_RESOLUTION = 224
DIVISOR = 8


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: expansion ratio, output width and how many blocks."""

    expand_ratio: int
    dim: int
    repeats: int


BASE_STAGES: tuple[Stage, ...] = (
    Stage(1, 16, 1),
    Stage(6, 24, 2),
    Stage(6, 40, 2),
    Stage(6, 80, 3),
    Stage(6, 112, 3),
    Stage(6, 192, 4),
    Stage(6, 320, 1),
)


def round_filters(channels: float, width: float, divisor: int = DIVISOR) -> int:
    """Scale a width and round it to the nearest multiple of ``divisor``.

    Halves round up (never Python's banker's rounding); the result is at least ``divisor``, and
    one more ``divisor`` is added where rounding lost more than 10 % of the scaled width.
    """
    scaled = channels * width
    rounded = max(divisor, int(math.floor(scaled / divisor + 0.5)) * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def round_repeats(repeats: int, depth: float) -> int:
    """``ceil(repeats * depth)``, at least 1 (a hair of slack absorbs float error like 3.0000000001)."""
    return max(1, math.ceil(repeats * depth - 1e-9))


def input_dim_for(resolution: float) -> int:
    """Resolution has no pixels here: it scales the input width, 224 -> 256 features."""
    return round_filters(BASE_INPUT_DIM * resolution / BASE_RESOLUTION, 1.0)


@dataclass(frozen=True)
class Variant:
    """A row of the scaling table. ``phi``, ``flops_factor`` and ``coefficients`` (alpha, beta,
    gamma) are set for compound-scaled rows."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    input_dim: int
    phi: float | None = field(default=None, compare=False)
    flops_factor: float | None = field(default=None, compare=False)
    coefficients: tuple[float, float, float] | None = field(default=None, compare=False)
    arch: Arch = Arch()  # the paper's network; other options make the ablation study's networks

    @property
    def stem_dim(self) -> int:
        return round_filters(BASE_STEM, self.width)

    @property
    def head_dim(self) -> int:
        return round_filters(BASE_HEAD, self.width)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return scaled_stages(self.width, self.depth)


def scaled_stages(width: float, depth: float, base: tuple[Stage, ...] = BASE_STAGES) -> tuple[Stage, ...]:
    """The B0 stages scaled by ``width`` and ``depth`` (pure; validates its arguments)."""
    check_positive("width", width)
    check_positive("depth", depth)
    return tuple(
        Stage(s.expand_ratio, round_filters(s.dim, width), round_repeats(s.repeats, depth)) for s in base
    )


def check_positive(what: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number, got {value!r}")


# (width, depth, resolution, dropout) per variant; input_dim is derived from the resolution.
_TABLE = {
    "dense_b0": (1.0, 1.0, 224, 0.2),
    "dense_b1": (1.0, 1.1, 240, 0.2),
    "dense_b2": (1.1, 1.2, 260, 0.3),
    "dense_b3": (1.2, 1.4, 300, 0.3),
    "dense_b4": (1.4, 1.8, 380, 0.4),
    "dense_b5": (1.6, 2.2, 456, 0.4),
    "dense_b6": (1.8, 2.6, 528, 0.5),
    "dense_b7": (2.0, 3.1, 600, 0.5),
}

VARIANTS: dict[str, Variant] = {
    name: Variant(name, w, d, r, p, input_dim_for(r)) for name, (w, d, r, p) in _TABLE.items()
}


PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)  # EfficientNet's alpha, beta, gamma: the table's


def compound(phi: float, alpha: float = PAPER_COEFFICIENTS[0], beta: float = PAPER_COEFFICIENTS[1],
             gamma: float = PAPER_COEFFICIENTS[2]) -> Variant:
    """A compound-scaled variant: ``depth = alpha**phi``, ``width = beta**phi``,
    ``resolution = 224 * gamma**phi``.

    ``flops_factor`` is ``(alpha * beta**2 * gamma**2) ** phi``, about ``2**phi`` for the paper's
    coefficients. Dropout follows the table's trend, 0.2 + 0.05 per unit of phi, capped at 0.5.
    """
    if not isinstance(phi, (int, float)) or isinstance(phi, bool) or not math.isfinite(phi) or phi < 0:
        raise InputError(f"phi must be a number >= 0, got {phi!r}")
    for what, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_positive(what, value)
    resolution = int(math.floor(BASE_RESOLUTION * gamma**phi + 0.5))
    coefficients = (float(alpha), float(beta), float(gamma))
    # Other coefficients make another network: its name says which, so two never share a manifest entry.
    suffix = "" if coefficients == PAPER_COEFFICIENTS else f"_a{alpha:g}_b{beta:g}_g{gamma:g}"
    return Variant(
        name=f"dense_phi{phi:g}{suffix}",
        width=round(beta**phi, 6),
        depth=round(alpha**phi, 6),
        resolution=resolution,
        dropout=round(min(0.5, 0.2 + 0.05 * phi), 4),
        input_dim=input_dim_for(resolution),
        phi=float(phi),
        flops_factor=(alpha * beta**2 * gamma**2) ** phi,
        coefficients=coefficients,
    )


def get_variant(name: str) -> Variant:
    """The variant called ``name``: a table row, a row with architecture options (``dense_b0_nose``,
    ``dense_b0_relu``) or a baseline at a multiple of B0's FLOPs (``resmlp_1x``, ``mlp_4x``); a
    ``ValueError`` listing the valid names otherwise."""
    if isinstance(name, str) and name in VARIANTS:
        return VARIANTS[name]
    parsed = parse_name(name)
    if parsed is None:
        raise InputError(f"unknown variant {name!r}; valid names: {', '.join(VARIANTS)}, or a row with _nose and/or "
                         f"_relu (dense_b0_relu), or a baseline resmlp_Mx / mlp_Mx (M: a multiple of B0's FLOPs)")
    row, opts = parsed
    if row == "baseline":
        from .config import baseline_arch  # config builds on this module

        base = VARIANTS["dense_b0"]
        arch = baseline_arch(opts["body"], opts["multiplier"], activation=opts["activation"])
        return Variant(name, base.width, base.depth, base.resolution, base.dropout, base.input_dim, arch=arch)
    v = VARIANTS[row] if row in VARIANTS else get_variant(row)
    return Variant(name, v.width, v.depth, v.resolution, v.dropout, v.input_dim, arch=Arch(**opts))
