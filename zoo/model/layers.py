"""The dense EfficientNet family's layers: MBConv blocks with squeeze-excitation on 1-D feature vectors.

Two flavors share the stage plan of :mod:`zoo.model.scaling`:

* ``paper`` (default): the dense analogue of the paper's MBConv (BatchNorm, a per-feature affine
  "transform" in place of the depthwise convolution, SE squeezed from the block *input*,
  stochastic depth in training).
* ``edifice``: layer for layer the Axon library's dense EfficientNet (Dense layers with bias,
  LayerNorm, expansion from the block *output*, no transform, no stochastic depth).

The options of :class:`zoo.model.arch.Arch` change this network in place: no squeeze-excitation,
ReLU for SiLU, or a baseline body (a pre-activation residual MLP, a plain MLP) between the same
stem and classifier. The default builds exactly the modules (and ONNX node names) it always did.
"""

from __future__ import annotations


import torch
from torch import nn

from .arch import ACTIVATIONS
from .config import STOCHASTIC_DEPTH_RATE, NetworkConfig, check_dim, check_flavor, hidden_dim_for, squeeze_dim_for
from .scaling import check_positive


def activation(name: str = "silu") -> nn.Module:
    """The network's activation module: SiLU (Swish, the paper's) or ReLU."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return nn.SiLU() if name == "silu" else nn.ReLU()


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(Linear(s, d)(silu(Linear(d, s)(x))))``: a learned per-feature gate."""

    def __init__(self, dim: int, squeeze_dim: int, act: str = "silu"):
        super().__init__()
        check_dim("dim", dim)
        check_dim("squeeze_dim", squeeze_dim)
        self.reduce = nn.Linear(dim, squeeze_dim)
        self.act = activation(act)
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
        se: bool = True,
        act: str = "silu",
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
                nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), activation(act))
                if expand_ratio != 1
                else None
            )
            self.transform = nn.Sequential(FeatureAffine(hidden), activation(act))
            self.se = SqueezeExcitation(hidden, squeeze, act) if se else None
            self.project = nn.Sequential(nn.Linear(hidden, out_dim, bias=False), nn.BatchNorm1d(out_dim))
            self.drop_rate = float(drop_rate)
        else:
            self.expand = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), activation(act))
            self.transform = None
            self.se = SqueezeExcitation(hidden, squeeze, act) if se else None
            self.project = nn.Sequential(nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))
            self.drop_rate = 0.0  # the Axon network has no stochastic depth
        self.has_residual = in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand is not None:
            y = self.expand(y)
        if self.transform is not None:
            y = self.transform(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if self.has_residual:
            y = x + drop_path(y, self.drop_rate, self.training)
        return y


class ResidualBlock(nn.Module):
    """A baseline's pre-activation residual block: ``x + branch(x)``, the branch
    ``BN -> act -> Linear -> BN -> act -> Linear`` at one width (no expansion, no SE)."""

    def __init__(self, dim: int, norm, act: str = "silu", bias: bool = False):
        super().__init__()
        self.branch = nn.Sequential(norm(dim), activation(act), nn.Linear(dim, dim, bias=bias),
                                    norm(dim), activation(act), nn.Linear(dim, dim, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class DenseEfficientNet(nn.Module):
    """``[batch, input_dim] -> [batch, num_classes]`` (or ``[batch, head_dim]`` without a classifier).

    ``stem -> blocks -> head -> dropout -> classifier`` for every body: the paper's MBConv blocks
    and their 1280-wide head, or a baseline's hidden layers (residual blocks with a final
    pre-activation ``BN -> act`` as head; plain ``Linear -> BN -> act`` layers with none)."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        paper = config.flavor == "paper"
        arch = config.arch

        def norm(dim: int) -> nn.Module:
            return nn.BatchNorm1d(dim) if paper else nn.LayerNorm(dim)

        self.stem = nn.Sequential(
            nn.Linear(config.input_dim, config.stem_dim, bias=not paper), norm(config.stem_dim),
            activation(arch.activation)
        )
        if arch.body != "mbconv":
            w = arch.width
            if arch.body == "residual":
                self.blocks = nn.Sequential(*(ResidualBlock(w, norm, arch.activation, not paper)
                                              for _ in range(arch.depth)))
                self.head = nn.Sequential(norm(w), activation(arch.activation))
            else:
                self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(w, w, bias=not paper), norm(w),
                                                            activation(arch.activation))
                                              for _ in range(arch.depth)))
                self.head = nn.Sequential()
            self.dropout = nn.Dropout(config.dropout) if (paper or config.dropout > 0) else None
            self.classifier = nn.Linear(w, config.num_classes) if config.num_classes is not None else None
            return
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
                    se=arch.se,
                    act=arch.activation,
                )
                for k, b in enumerate(specs)
            )
        )
        last = specs[-1].out_dim if specs else config.stem_dim
        self.head = nn.Sequential(
            nn.Linear(last, config.head_dim, bias=not paper), norm(config.head_dim), activation(arch.activation)
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


