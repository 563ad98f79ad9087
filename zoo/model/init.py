"""Seeded weights: ``create(name, seed=s)`` gives the same bits in any process."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import variant_config
from .layers import DenseEfficientNet, MBConv, SqueezeExcitation
from .scaling import Variant


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
    if weights is not None:
        from .weights import load_weights

        return load_weights(model, weights).eval()
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
