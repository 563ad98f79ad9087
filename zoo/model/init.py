"""Seeded weights: ``create(name, seed=s)`` gives the same bits in any process."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import variant_config
from .layers import DenseEfficientNet, MBConv, SqueezeExcitation
from .reference import forward64
from .repro import Stream, stream, to_float32
from .scaling import Variant
from ..errors import InputError


def create(
    variant: str | Variant,
    num_classes: int | None = 10,
    seed: int = 0,
    flavor: str = "paper",
    input_dim: int | None = None,
    weights: str | None = None,
) -> DenseEfficientNet:
    """A variant with seeded weights, in eval mode: the same seed gives the same bits in any process.

    With ``weights`` (a safetensors file) the network is built from the same options and the
    file's state dict is loaded strictly instead (see :func:`zoo.model.weights.load_weights`).

    Every parameter and normalisation statistic follows the reproducibility rule of
    :mod:`zoo.model.repro` (the same bits on any CPU, BLAS, thread count and OS). Linear weights
    are He-normal (fan-in; Irwin-Hall normals), biases uniform in ``±1/sqrt(fan_in)``. BatchNorm gets
    non-trivial affine parameters, and running statistics measured on one seeded batch (as a
    trained network has), so that folding it into the preceding Linear at export is really
    exercised; LayerNorm gets non-trivial affine parameters too. Squeeze-excitation weights,
    residual-branch BatchNorm gains and the classifier start small (see ``init_weights``).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    model = DenseEfficientNet(variant_config(variant, num_classes, flavor, input_dim))
    if weights is not None:
        from .weights import load_weights

        return load_weights(model, weights).eval()
    init_weights(model, seed)
    return model.eval()


def init_weights(model: nn.Module, seed: int) -> None:
    """Seeded parameters and BatchNorm statistics under the rule of :mod:`zoo.model.repro`.

    Each tensor draws from its own stream ``("weights", seed, "<parameter name>")``, so nothing
    depends on module order, global RNG state or thread count; scales are applied in float64 and
    every tensor is rounded once to float32.
    """
    residual_gains = {
        id(m.project[1]) for m in model.modules()
        if isinstance(m, MBConv) and m.has_residual and m.flavor == "paper"
    }
    se_layers = {id(lin) for m in model.modules() if isinstance(m, SqueezeExcitation) for lin in (m.reduce, m.expand)}
    classifier = getattr(model, "classifier", None)
    # The three gains below keep the seeded networks well conditioned: small residual branches, as
    # trained networks have (with full-size branches the residual stream of an untrained B7 grows
    # ~1.3x per block and its outputs reach 1e4); SE gates that start smooth, far from a sigmoid's
    # step (He-init SE made B7 chaotic, its fp32 outputs off by more than their own size at 10x);
    # logits of order one, as a trained classifier's.
    for name, module in model.named_modules():
        def draw(what: str, name: str = name) -> Stream:
            return stream("weights", seed, f"{name}.{what}")

        if isinstance(module, nn.Linear):
            fan_in = module.in_features
            gain = 0.1 if module is classifier else 0.05 if id(module) in se_layers else 1.0
            _set(module.weight, draw("weight").normal(tuple(module.weight.shape), math.sqrt(2.0 / fan_in) * gain))
            if module.bias is not None:
                bound = 1.0 / math.sqrt(fan_in)
                _set(module.bias, draw("bias").uniform(tuple(module.bias.shape), -bound, bound))
        elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            shape = tuple(module.weight.shape)
            low, high = (0.05, 0.15) if id(module) in residual_gains else (0.8, 1.2)
            _set(module.weight, draw("weight").uniform(shape, low, high))
            _set(module.bias, draw("bias").normal(shape, 0.1))
            if isinstance(module, nn.BatchNorm1d):  # placeholders until calibration measures them
                _set(module.running_mean, draw("running_mean").normal(shape, 0.1))
                _set(module.running_var, draw("running_var").uniform(shape, 0.8, 1.6))
    if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        calibrate_batchnorm(model, seed)


@torch.no_grad()
def _set(tensor: torch.Tensor, values64) -> None:
    tensor.copy_(torch.from_numpy(to_float32(values64)))


CALIBRATION_BATCH = 256


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, seed: int) -> None:
    """Set every BatchNorm's running statistics to those of one seeded N(0,1) batch, as training would.

    Without this an untrained network's activations shrink ~3x per stage (SiLU and the SE gate
    halve them) and the output stops depending on the input, which would make parity checks
    toothless. The pass is :func:`zoo.model.reference.forward64` (float64, exact products and
    sums), so the float32 statistics it leaves are the same bits on any machine.
    """
    x = stream("calibration", seed).normal((CALIBRATION_BATCH, model.config.input_dim))
    was_training = model.training
    model.eval()
    forward64(model, torch.from_numpy(x), calibrate=True, slices=2)
    model.train(was_training)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
