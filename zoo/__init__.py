"""zoo: reproducible, cross-runtime-verified ONNX artifacts of the dense EfficientNet family.

The public API is imported lazily (PEP 562), so that ``import zoo.hub`` -- the download client --
loads neither torch nor the exporters.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# ONNX Runtime (1.31 on Linux) creates $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,
# onnxruntime.db} for its telemetry when it is first imported, unless this variable is set then; set
# here, before any zoo module imports it (the runtimes started as subprocesses inherit it). A user
# who wants the telemetry sets ORT_DISABLE_TELEMETRY=0. See docs/reliability.md.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_MODEL_API = (
    "BASE_STAGES", "FLAVORS", "VARIANTS", "DenseEfficientNet", "MBConv", "NetworkConfig", "SqueezeExcitation",
    "Stage", "Variant", "build", "compound", "count_params", "create", "get_variant", "load_weights", "mbconv_block",
    "network_config", "output_size", "round_filters", "round_repeats", "save_weights", "squeeze_excitation",
    "variant_config",
)


def __getattr__(name: str):
    if name in _MODEL_API:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODEL_API])


__all__ = ["__version__", *_MODEL_API]
