"""Small parts every network is made of: norms, activations, convolutions by dimension."""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "GaussianNoise",
    "activation",
    "conv",
    "conv_transpose",
    "dropout",
    "norm",
    "pool",
    "separable_conv",
]

NORMS = ("batch", "group", "instance", "layer", "none")
ACTIVATIONS = ("relu", "prelu", "leaky_relu")


def conv(dims: int, *args, **kwargs) -> nn.Module:
    """``Conv2d`` or ``Conv3d``."""
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(*args, **kwargs)


def separable_conv(dims: int, cin: int, cout: int, kernel: int, **kwargs) -> nn.Module:
    """A depthwise ``kernel`` convolution then a pointwise 1×1 one."""
    return nn.Sequential(
        conv(dims, cin, cin, kernel, groups=cin, **kwargs),
        conv(dims, cin, cout, 1, bias=kwargs.get("bias", True)),
    )


class GaussianNoise(nn.Module):
    """Adds zero-mean Gaussian noise of standard deviation ``sigma`` while training
    (a Keras ``GaussianNoise`` layer); the identity in evaluation."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x):
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x


def conv_transpose(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d)(*args, **kwargs)


def pool(dims: int, kernel: int = 2) -> nn.Module:
    return (nn.MaxPool2d if dims == 2 else nn.MaxPool3d)(kernel)


def dropout(dims: int, p: float) -> nn.Module:
    if p <= 0:
        return nn.Identity()
    return (nn.Dropout2d if dims == 2 else nn.Dropout3d)(p)


def norm(kind: str, dims: int, channels: int, groups: int = 8, momentum: float = 0.1) -> nn.Module:
    """A normalisation layer by name: ``batch`` (with PyTorch's ``momentum``),
    ``group``, ``instance``, ``layer`` (over channels and space of each sample) or
    ``none``."""
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels, momentum=momentum)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        g = min(groups, channels)
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def activation(kind: str, channels: int) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {kind!r}")


def check_dims(dims: int) -> int:
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    return dims
