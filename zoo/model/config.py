"""Network shape as data: what fixes a network's layers, and its analytic parameter and FLOP counts.

Pure Python (no torch): ``zoo list`` and the hub read shapes without the build toolchain.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..errors import InputError
from .arch import BASELINE_DEPTH, BODIES, Arch
from .scaling import (BASE_HEAD, BASE_INPUT_DIM, BASE_STAGES, DIVISOR, Stage, Variant, check_positive, get_variant,
                      round_filters, scaled_stages)

FLAVORS = ("paper", "edifice")
STOCHASTIC_DEPTH_RATE = 0.2


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise InputError(f"unknown flavor {flavor!r}; valid flavors: {', '.join(FLAVORS)}")
    return flavor


def check_dim(what: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{what} must be a positive integer, got {value!r}")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def squeeze_dim_for(in_dim: int, out_dim: int, expand_ratio: int, se_ratio: float, flavor: str) -> int:
    if flavor == "paper":
        return max(1, int(in_dim * se_ratio))  # from the block input, as in the paper's code
    return max(1, _round_half_up(out_dim * expand_ratio * se_ratio))


def hidden_dim_for(in_dim: int, out_dim: int, expand_ratio: int, flavor: str) -> int:
    return in_dim * expand_ratio if flavor == "paper" else out_dim * expand_ratio


@dataclass(frozen=True)
class BlockSpec:
    in_dim: int
    out_dim: int
    expand_ratio: int


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes a network's shape; the analytic params and FLOPs are derived from it."""

    input_dim: int
    stem_dim: int
    stages: tuple[Stage, ...]
    head_dim: int
    num_classes: int | None
    flavor: str = "paper"
    se_ratio: float = 0.25
    dropout: float = 0.0
    arch: Arch = Arch()  # SE, activation, or a baseline body (see zoo.model.arch)

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        out, prev = [], self.stem_dim
        for stage in self.stages:
            for _ in range(stage.repeats):
                out.append(BlockSpec(prev, stage.dim, stage.expand_ratio))
                prev = stage.dim
        return tuple(out)

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.num_classes is not None else self.head_dim

    def linear_layers(self) -> list[tuple[int, int, bool]]:
        """Every Linear layer as ``(in, out, has_bias)``, in forward order."""
        bias = self.flavor == "edifice"
        layers = [(self.input_dim, self.stem_dim, bias)]
        if self.arch.body != "mbconv":  # a baseline: depth blocks of two layers, or depth layers
            w = self.arch.width
            layers += [(w, w, bias)] * (self.arch.depth * (2 if self.arch.body == "residual" else 1))
            return layers + ([(w, self.num_classes, True)] if self.num_classes is not None else [])
        for b in self.blocks:
            h = hidden_dim_for(b.in_dim, b.out_dim, b.expand_ratio, self.flavor)
            s = squeeze_dim_for(b.in_dim, b.out_dim, b.expand_ratio, self.se_ratio, self.flavor)
            if self.flavor == "edifice" or b.expand_ratio != 1:
                layers.append((b.in_dim, h, bias))
            layers += ([(h, s, True), (s, h, True)] if self.arch.se else []) + [(h, b.out_dim, bias)]
        layers.append((self.blocks[-1].out_dim if self.blocks else self.stem_dim, self.head_dim, bias))
        if self.num_classes is not None:
            layers.append((self.head_dim, self.num_classes, True))
        return layers

    def params(self) -> int:
        """Trainable parameters, counted analytically (no model is built)."""
        total = sum(i * o + (o if b else 0) for i, o, b in self.linear_layers())
        norm = 2 * (self.stem_dim + self.head_dim)  # BatchNorm / LayerNorm: weight and bias
        if self.arch.body == "residual":  # stem, two per block, the head's final pre-activation norm
            return total + 2 * self.arch.width * (2 + 2 * self.arch.depth)
        if self.arch.body == "plain":  # stem, one per layer; no head
            return total + 2 * self.arch.width * (1 + self.arch.depth)
        for b in self.blocks:
            h = hidden_dim_for(b.in_dim, b.out_dim, b.expand_ratio, self.flavor)
            if self.flavor == "paper":
                norm += (2 * h if b.expand_ratio != 1 else 0) + 2 * h + 2 * b.out_dim  # BN, affine, BN
            else:
                norm += 2 * h + 2 * b.out_dim  # two LayerNorms
        return total + norm

    def flops(self) -> int:
        """Analytic FLOPs per sample: matrix multiplies only, a multiply-add counted as 2.

        This is what ``torch.utils.flop_counter.FlopCounterMode`` counts for ``mm``/``addmm``;
        bias adds, normalisation, activations, SE gating and residual adds are not counted
        (they are linear in the width, well under 1 % of the total).
        """
        return sum(2 * i * o for i, o, _ in self.linear_layers())


def network_config(
    input_dim: int = 256,
    base_dim: int = 32,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    num_classes: int | None = None,
    dropout: float = 0.0,
    flavor: str = "paper",
    se_ratio: float = 0.25,
    arch: Arch = Arch(),
) -> NetworkConfig:
    """Validate the options of :func:`build` and derive the network's shape (``arch``: SE on/off,
    activation, or a baseline body; the default is the paper's network)."""
    check_dim("input_dim", input_dim)
    check_dim("base_dim", base_dim)
    check_positive("width", width_multiplier)
    check_positive("depth", depth_multiplier)
    check_dim("num_classes", num_classes, allow_none=True)
    check_positive("se_ratio", se_ratio)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
    check_flavor(flavor)
    if not isinstance(arch, Arch):
        raise InputError(f"arch must be a zoo.model.arch.Arch, got {arch!r}")
    baseline = arch.body != "mbconv"
    return NetworkConfig(
        input_dim=input_dim,
        stem_dim=arch.width if baseline else round_filters(base_dim, width_multiplier),
        stages=() if baseline else scaled_stages(width_multiplier, depth_multiplier, BASE_STAGES),
        head_dim=arch.width if baseline else round_filters(BASE_HEAD, width_multiplier),
        num_classes=num_classes,
        flavor=flavor,
        se_ratio=float(se_ratio),
        dropout=float(dropout),
        arch=arch,
    )


def resolve_variant(variant: str | Variant) -> Variant:
    return variant if isinstance(variant, Variant) else get_variant(variant)


def variant_config(
    variant: str | Variant, num_classes: int | None = 10, flavor: str = "paper", input_dim: int | None = None
) -> NetworkConfig:
    """The network shape of a table row (``input_dim`` pinned by the caller or taken from the row)."""
    v = resolve_variant(variant)
    return network_config(
        input_dim=v.input_dim if input_dim is None else input_dim,
        depth_multiplier=v.depth,
        width_multiplier=v.width,
        num_classes=num_classes,
        dropout=v.dropout,
        flavor=flavor,
        arch=v.arch,
    )


B0_CLASSES = 10  # the reference task's classes: the FLOPs a baseline is sized against


@functools.lru_cache(maxsize=64)
def baseline_arch(body: str, multiplier: float = 1.0, depth: int | None = None, activation: str = "silu",
                  input_dim: int = BASE_INPUT_DIM) -> Arch:
    """The baseline ``body`` ("residual" or "plain") at ``depth`` (default :data:`BASELINE_DEPTH`)
    whose width (a multiple of 8) puts its FLOPs closest, in log, to ``multiplier`` x B0's (both at
    ``input_dim`` features and 10 classes), by the analytic counter :meth:`NetworkConfig.flops`."""
    if body not in BODIES or body == "mbconv":
        raise InputError(f"a baseline body is residual or plain, got {body!r}")
    check_positive("multiplier", multiplier)
    depth = BASELINE_DEPTH[body] if depth is None else depth
    target = multiplier * network_config(input_dim, num_classes=B0_CLASSES).flops()

    def flops(width: int) -> int:
        return network_config(input_dim, num_classes=B0_CLASSES,
                              arch=Arch(body, activation=activation, width=width, depth=depth)).flops()

    lo, hi = 1, 1
    while flops(hi * DIVISOR) < target:  # FLOPs grow with the width: double, then bisect
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if flops(mid * DIVISOR) < target else (lo, mid)
    best = min((k for k in (lo - 1, lo) if k >= 1), key=lambda k: abs(math.log(flops(k * DIVISOR) / target)))
    return Arch(body, activation=activation, width=best * DIVISOR, depth=depth)


