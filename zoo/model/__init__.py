"""Model layer: the scaling table, network shapes, layers and seeded initialisation.

``scaling`` and ``config`` are pure Python; ``layers``, ``builders`` and ``init`` need torch, and
are imported only when one of their names is first used.
"""

from __future__ import annotations

import importlib

from .arch import Arch
from .config import FLAVORS, BlockSpec, NetworkConfig, baseline_arch, network_config, resolve_variant, variant_config
from .scaling import BASE_STAGES, VARIANTS, Stage, Variant, compound, get_variant, round_filters, round_repeats

_LAZY = {
    "DenseEfficientNet": "layers", "MBConv": "layers", "ResidualBlock": "layers", "SqueezeExcitation": "layers", "FeatureAffine": "layers",
    "build": "builders", "output_size": "builders", "mbconv_block": "builders", "squeeze_excitation": "builders",
    "create": "init", "init_weights": "init", "count_params": "init",
    "load_weights": "weights", "save_weights": "weights",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: PLE0604 - the lazy names resolve through __getattr__
    "Arch", "baseline_arch", "BASE_STAGES", "FLAVORS", "VARIANTS", "BlockSpec", "NetworkConfig", "Stage", "Variant", "compound", "get_variant",
    "network_config", "resolve_variant", "round_filters", "round_repeats", "variant_config",
    "DenseEfficientNet", "MBConv", "ResidualBlock", "SqueezeExcitation", "FeatureAffine", "build", "output_size", "mbconv_block",
    "squeeze_excitation", "create", "init_weights", "count_params", "load_weights", "save_weights",
]
