"""The public constructors of the family (mirroring the Axon library's ``EfficientNet.build/1``)."""

from __future__ import annotations

from .arch import Arch
from .config import check_dim, network_config
from .layers import DenseEfficientNet, MBConv, SqueezeExcitation
from .scaling import BASE_HEAD, check_positive, round_filters

def build(
    input_dim: int = 256,
    base_dim: int = 32,
    depth_multiplier: float = 1.0,
    width_multiplier: float = 1.0,
    num_classes: int | None = None,
    dropout: float = 0.0,
    flavor: str = "paper",
    se_ratio: float = 0.25,
    *,
    se: bool = True,
    activation: str = "silu",
) -> DenseEfficientNet:
    """Build a dense EfficientNet (PyTorch's default initialisation, train mode); ``se=False`` drops
    squeeze-excitation, ``activation="relu"`` puts ReLU for every SiLU. The baselines:
    ``DenseEfficientNet(network_config(..., arch=zoo.model.config.baseline_arch("residual", 4.0)))``."""
    return DenseEfficientNet(
        network_config(input_dim, base_dim, depth_multiplier, width_multiplier, num_classes, dropout, flavor, se_ratio,
                       arch=Arch(se=se, activation=activation))
    )


def output_size(width_multiplier: float = 1.0, num_classes: int | None = None) -> int:
    """Width of the network's output: ``num_classes``, or the scaled head width (1280 for B0)."""
    check_positive("width", width_multiplier)
    check_dim("num_classes", num_classes, allow_none=True)
    return num_classes if num_classes is not None else round_filters(BASE_HEAD, width_multiplier)


def mbconv_block(
    in_dim: int, out_dim: int, expand_ratio: int = 6, se_ratio: float = 0.25, *, drop_rate: float = 0.0,
    flavor: str = "paper", se: bool = True, activation: str = "silu",
) -> MBConv:
    return MBConv(in_dim, out_dim, expand_ratio, se_ratio, drop_rate=drop_rate, flavor=flavor, se=se, act=activation)


def squeeze_excitation(dim: int, squeeze_dim: int) -> SqueezeExcitation:
    return SqueezeExcitation(dim, squeeze_dim)


