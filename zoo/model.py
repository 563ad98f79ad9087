"""The dense EfficientNet family: MBConv blocks with squeeze-excitation on 1-D feature vectors.

Two flavors share the stage plan of :mod:`zoo.scaling`:

* ``paper`` (default): the dense analogue of the paper's MBConv (BatchNorm, a per-feature affine
  "transform" in place of the depthwise convolution, SE squeezed from the block *input*,
  stochastic depth in training).
* ``edifice``: layer for layer the Axon library's dense EfficientNet (Dense layers with bias,
  LayerNorm, expansion from the block *output*, no transform, no stochastic depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .scaling import (
    BASE_HEAD,
    BASE_STAGES,
    Stage,
    Variant,
    check_positive,
    get_variant,
    round_filters,
    scaled_stages,
)

FLAVORS = ("paper", "edifice")
STOCHASTIC_DEPTH_RATE = 0.2


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; valid flavors: {', '.join(FLAVORS)}")
    return flavor


def check_dim(what: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def squeeze_dim_for(in_dim: int, out_dim: int, expand_ratio: int, se_ratio: float, flavor: str) -> int:
    if flavor == "paper":
        return max(1, int(in_dim * se_ratio))  # from the block input, as in the paper's code
    return max(1, _round_half_up(out_dim * expand_ratio * se_ratio))


def hidden_dim_for(in_dim: int, out_dim: int, expand_ratio: int, flavor: str) -> int:
    return in_dim * expand_ratio if flavor == "paper" else out_dim * expand_ratio


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(Linear(s, d)(silu(Linear(d, s)(x))))``: a learned per-feature gate."""

    def __init__(self, dim: int, squeeze_dim: int):
        super().__init__()
        check_dim("dim", dim)
        check_dim("squeeze_dim", squeeze_dim)
        self.reduce = nn.Linear(dim, squeeze_dim)
        self.act = nn.SiLU()
        self.expand = nn.Linear(squeeze_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(self.act(self.reduce(x))))


class FeatureAffine(nn.Module):
    """Per-feature ``x * scale + shift``: a depthwise convolution of kernel size 1, in 1-D."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``rate``."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep) / keep


class MBConv(nn.Module):
    """One MBConv block; submodules ``expand``, ``transform``, ``se``, ``project`` name the ONNX nodes."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        expand_ratio: int = 6,
        se_ratio: float = 0.25,
        drop_rate: float = 0.0,
        flavor: str = "paper",
    ):
        super().__init__()
        check_dim("in_dim", in_dim)
        check_dim("out_dim", out_dim)
        check_dim("expand_ratio", expand_ratio)
        check_positive("se_ratio", se_ratio)
        check_flavor(flavor)
        self.in_dim, self.out_dim, self.flavor = in_dim, out_dim, flavor
        hidden = hidden_dim_for(in_dim, out_dim, expand_ratio, flavor)
        squeeze = squeeze_dim_for(in_dim, out_dim, expand_ratio, se_ratio, flavor)
        if flavor == "paper":
            self.expand = (
                nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.SiLU())
                if expand_ratio != 1
                else None
            )
            self.transform = nn.Sequential(FeatureAffine(hidden), nn.SiLU())
            self.se = SqueezeExcitation(hidden, squeeze)
            self.project = nn.Sequential(nn.Linear(hidden, out_dim, bias=False), nn.BatchNorm1d(out_dim))
            self.drop_rate = float(drop_rate)
        else:
            self.expand = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU())
            self.transform = None
            self.se = SqueezeExcitation(hidden, squeeze)
            self.project = nn.Sequential(nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))
            self.drop_rate = 0.0  # the Axon network has no stochastic depth
        self.has_residual = in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = self.expand(y)
        if self.transform is not None:
            y = self.transform(y)
        y = self.project(self.se(y))
        if self.has_residual:
            y = x + drop_path(y, self.drop_rate, self.training)
        return y


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
        for b in self.blocks:
            h = hidden_dim_for(b.in_dim, b.out_dim, b.expand_ratio, self.flavor)
            s = squeeze_dim_for(b.in_dim, b.out_dim, b.expand_ratio, self.se_ratio, self.flavor)
            if self.flavor == "edifice" or b.expand_ratio != 1:
                layers.append((b.in_dim, h, bias))
            layers += [(h, s, True), (s, h, True), (h, b.out_dim, bias)]
        layers.append((self.blocks[-1].out_dim if self.blocks else self.stem_dim, self.head_dim, bias))
        if self.num_classes is not None:
            layers.append((self.head_dim, self.num_classes, True))
        return layers

    def params(self) -> int:
        """Trainable parameters, counted analytically (no model is built)."""
        total = sum(i * o + (o if b else 0) for i, o, b in self.linear_layers())
        norm = 2 * (self.stem_dim + self.head_dim)  # BatchNorm / LayerNorm: weight and bias
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


class DenseEfficientNet(nn.Module):
    """``[batch, input_dim] -> [batch, num_classes]`` (or ``[batch, head_dim]`` without a classifier)."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        paper = config.flavor == "paper"

        def norm(dim: int) -> nn.Module:
            return nn.BatchNorm1d(dim) if paper else nn.LayerNorm(dim)

        self.stem = nn.Sequential(
            nn.Linear(config.input_dim, config.stem_dim, bias=not paper), norm(config.stem_dim), nn.SiLU()
        )
        specs = config.blocks
        self.blocks = nn.Sequential(
            *(
                MBConv(
                    b.in_dim,
                    b.out_dim,
                    b.expand_ratio,
                    config.se_ratio,
                    drop_rate=STOCHASTIC_DEPTH_RATE * k / len(specs),
                    flavor=config.flavor,
                )
                for k, b in enumerate(specs)
            )
        )
        last = specs[-1].out_dim if specs else config.stem_dim
        self.head = nn.Sequential(
            nn.Linear(last, config.head_dim, bias=not paper), norm(config.head_dim), nn.SiLU()
        )
        # The Axon network adds its dropout layer only when the rate is positive.
        self.dropout = nn.Dropout(config.dropout) if (paper or config.dropout > 0) else None
        self.classifier = nn.Linear(config.head_dim, config.num_classes) if config.num_classes is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        if self.dropout is not None:
            x = self.dropout(x)
        if self.classifier is not None:
            x = self.classifier(x)
        return x


def network_config(
    input_dim: int = 256,
    base_dim: int = 32,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    num_classes: int | None = None,
    dropout: float = 0.0,
    flavor: str = "paper",
    se_ratio: float = 0.25,
) -> NetworkConfig:
    """Validate the options of :func:`build` and derive the network's shape."""
    check_dim("input_dim", input_dim)
    check_dim("base_dim", base_dim)
    check_positive("width", width_multiplier)
    check_positive("depth", depth_multiplier)
    check_dim("num_classes", num_classes, allow_none=True)
    check_positive("se_ratio", se_ratio)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    check_flavor(flavor)
    return NetworkConfig(
        input_dim=input_dim,
        stem_dim=round_filters(base_dim, width_multiplier),
        stages=scaled_stages(width_multiplier, depth_multiplier, BASE_STAGES),
        head_dim=round_filters(BASE_HEAD, width_multiplier),
        num_classes=num_classes,
        flavor=flavor,
        se_ratio=float(se_ratio),
        dropout=float(dropout),
    )


def build(
    input_dim: int = 256,
    base_dim: int = 32,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    num_classes: int | None = None,
    dropout: float = 0.0,
    flavor: str = "paper",
    se_ratio: float = 0.25,
) -> DenseEfficientNet:
    """Build a dense EfficientNet (PyTorch's default initialisation, train mode)."""
    return DenseEfficientNet(
        network_config(input_dim, base_dim, depth_multiplier, width_multiplier, num_classes, dropout, flavor, se_ratio)
    )


def output_size(width_multiplier: float = 1.0, num_classes: int | None = None) -> int:
    """Width of the network's output: ``num_classes``, or the scaled head width (1280 for B0)."""
    check_positive("width", width_multiplier)
    check_dim("num_classes", num_classes, allow_none=True)
    return num_classes if num_classes is not None else round_filters(BASE_HEAD, width_multiplier)


def mbconv_block(
    in_dim: int, out_dim: int, expand_ratio: int = 6, se_ratio: float = 0.25, *, drop_rate: float = 0.0, flavor: str = "paper"
) -> MBConv:
    return MBConv(in_dim, out_dim, expand_ratio, se_ratio, drop_rate=drop_rate, flavor=flavor)


def squeeze_excitation(dim: int, squeeze_dim: int) -> SqueezeExcitation:
    return SqueezeExcitation(dim, squeeze_dim)


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
    )


def create(
    variant: str | Variant,
    num_classes: int | None = 10,
    seed: int = 0,
    flavor: str = "paper",
    input_dim: int | None = None,
) -> DenseEfficientNet:
    """A variant with seeded weights, in eval mode: the same seed gives the same bits in any process.

    Every parameter and normalisation statistic is drawn from one ``torch.Generator`` seeded with
    ``seed``, in module order, so nothing depends on global RNG state or thread count. Linear
    weights are He-normal (fan-in), biases uniform in ``±1/sqrt(fan_in)``. BatchNorm gets
    non-trivial affine parameters, and running statistics measured on one seeded batch (as a
    trained network has), so that folding it into the preceding Linear at export is really
    exercised; LayerNorm gets non-trivial affine parameters too. Squeeze-excitation weights,
    residual-branch BatchNorm gains and the classifier start small (see ``init_weights``).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    model = DenseEfficientNet(variant_config(variant, num_classes, flavor, input_dim))
    init_weights(model, seed)
    return model.eval()


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fan_in = module.in_features
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
            if module.bias is not None:
                module.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), generator=g)
        elif isinstance(module, nn.BatchNorm1d):
            module.weight.uniform_(0.8, 1.2, generator=g)
            module.bias.normal_(0.0, 0.1, generator=g)
            module.running_mean.normal_(0.0, 0.1, generator=g)
            module.running_var.uniform_(0.8, 1.6, generator=g)
        elif isinstance(module, nn.LayerNorm):
            module.weight.uniform_(0.8, 1.2, generator=g)
            module.bias.normal_(0.0, 0.1, generator=g)
    # Small residual branches, as trained networks have: with full-size branches the residual
    # stream of an untrained B7 grows ~1.3x per block and its outputs reach 1e4.
    # The three choices below keep the seeded networks well conditioned, so that fp32 rounding
    # differences between runtimes stay far inside the parity tolerances even for inputs ten
    # times the calibration scale (measured: fp32 vs fp64 PyTorch, worst |error| / tolerance
    # 0.02 for N(0,1) inputs and 0.27 for 10 x N(0,1), B0-B7; He-init SE and unit residual
    # gains made B7 chaotic, its fp32 outputs off by more than their own size at 10x).
    if model.classifier is not None:
        model.classifier.weight.mul_(0.1)  # logits of order one, as a trained classifier's
    for module in model.modules():
        if isinstance(module, SqueezeExcitation):
            module.reduce.weight.mul_(0.05)  # gates start smooth, far from a sigmoid's step
            module.expand.weight.mul_(0.05)
        if isinstance(module, MBConv) and module.has_residual and module.flavor == "paper":
            module.project[1].weight.uniform_(0.05, 0.15, generator=g)  # small residual branches
    if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        _calibrate_batchnorm(model, g)


CALIBRATION_BATCH = 256


@torch.no_grad()
def _calibrate_batchnorm(model: nn.Module, g: torch.Generator) -> None:
    """Set every BatchNorm's running statistics to those of one seeded batch, as training would.

    Without this an untrained network's activations shrink ~3x per stage (SiLU and the SE gate
    halve them) and the output stops depending on the input, which would make parity checks
    toothless. The pass runs in float64, so the float32 statistics it leaves are the same bits
    on any CPU and thread count (short of a one-in-billions rounding tie).
    """
    x = torch.randn(CALIBRATION_BATCH, model.config.input_dim, generator=g, dtype=torch.float64)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [(m.momentum, m.training) for m in norms]
    model.double().eval()
    try:
        for m in norms:
            m.momentum = 1.0  # running statistics := this batch's
            m.train()
        model(x)
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
        model.float()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
