"""The network's forward pass in float64 under the reproducibility rule (:mod:`zoo.model.repro`).

PyTorch's own float64 forward takes BLAS- and instruction-set-specific kernels (GEMM blocking,
vectorised ``exp``), so its last bits differ between machines. This one walks the same modules with
:func:`~zoo.model.repro.matmul64`, :func:`~zoo.model.repro.silu64` and exact sums, so its bits are
the same everywhere: it computes the BatchNorm statistics of seeded weights (``calibrate=True``) and
the expected output of the test data. ``tests/test_repro.py`` checks it against ``model.double()``.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DenseEfficientNet, FeatureAffine, MBConv, ResidualBlock, SqueezeExcitation
from .repro import matmul64, mean64, sigmoid64, silu64, sqrt64


@torch.no_grad()
def forward64(model: nn.Module, x, *, calibrate: bool = False, slices: int = 3) -> torch.Tensor:
    """``model(x)`` in float64, the same bits on any machine (eval mode: dropout off).

    With ``calibrate=True`` every BatchNorm normalises with the statistics of this batch and keeps
    them as its running statistics (mean; unbiased variance), as a training step with momentum 1
    would; they are rounded once to the BatchNorm's float32.
    """
    x = torch.as_tensor(x).to(torch.float64)
    return _Runner(calibrate, slices).run(model, x)


class _Runner:
    def __init__(self, calibrate: bool, slices: int):
        self.calibrate = calibrate
        self.slices = slices

    def run(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(m, nn.Sequential):
            for child in m:
                x = self.run(child, x)
            return x
        if isinstance(m, nn.Linear):
            y = matmul64(x, m.weight.double(), self.slices)
            return y + m.bias.double() if m.bias is not None else y
        if isinstance(m, nn.BatchNorm1d):
            return self.batchnorm(m, x)
        if isinstance(m, nn.LayerNorm):
            mu = mean64(x, 1)[:, None]
            d = x - mu
            var = mean64(d * d, 1)[:, None]
            return d / sqrt64(var + m.eps) * m.weight.double() + m.bias.double()
        if isinstance(m, nn.SiLU):
            return silu64(x)
        if isinstance(m, nn.ReLU):
            return x.clamp_min(0.0)  # exact
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return x
        if isinstance(m, FeatureAffine):
            return x * m.scale.double() + m.shift.double()
        if isinstance(m, SqueezeExcitation):
            return x * sigmoid64(self.run(m.expand, self.run(m.act, self.run(m.reduce, x))))
        if isinstance(m, MBConv):
            y = x
            for part in (m.expand, m.transform, m.se, m.project):
                if part is not None:
                    y = self.run(part, y)
            return x + y if m.has_residual else y
        if isinstance(m, ResidualBlock):
            return x + self.run(m.branch, x)
        if isinstance(m, DenseEfficientNet):  # eval mode: dropout is the identity
            y = self.run(m.head, self.run(m.blocks, self.run(m.stem, x)))
            return self.run(m.classifier, y) if m.classifier is not None else y
        raise TypeError(f"forward64 does not know {type(m).__name__}")

    def batchnorm(self, m: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        if self.calibrate:
            n = x.shape[0]
            mean = mean64(x, 0)
            d = x - mean
            var = mean64(d * d, 0)  # biased, as training normalises with
            m.running_mean.copy_(torch.from_numpy((mean.numpy()).astype("float32")))
            m.running_var.copy_(torch.from_numpy((var * n / (n - 1)).numpy().astype("float32")))
        else:
            mean, var = m.running_mean.double(), m.running_var.double()
        return (x - mean) / sqrt64(var + m.eps) * m.weight.double() + m.bias.double()
