"""zoo: reproducible, cross-runtime-verified ONNX artifacts of the dense EfficientNet family."""

from .model import (
    FLAVORS,
    DenseEfficientNet,
    MBConv,
    NetworkConfig,
    SqueezeExcitation,
    build,
    count_params,
    create,
    mbconv_block,
    network_config,
    output_size,
    squeeze_excitation,
    variant_config,
)
from .scaling import BASE_STAGES, VARIANTS, Stage, Variant, compound, get_variant, round_filters, round_repeats

__version__ = "0.1.0"

__all__ = [
    "BASE_STAGES", "FLAVORS", "VARIANTS", "DenseEfficientNet", "MBConv", "NetworkConfig",
    "SqueezeExcitation", "Stage", "Variant", "__version__", "build", "compound", "count_params",
    "create", "get_variant", "mbconv_block", "network_config", "output_size", "round_filters",
    "round_repeats", "squeeze_excitation", "variant_config",
]
