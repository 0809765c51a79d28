"""The Modular U-Net: 2D, 2.5D and 3D, with or without skip connections.

Follows the Modular U-Net paper (few annotated slices suffice): ``depth`` levels below
the top, ``f0`` feature maps at the top, doubling per level.

* **ConvBlock**: conv 3×3(×3) → norm → activation → conv → norm → activation, plus a
  residual 1×1(×1) convolution of the block's input added to its output, then dropout.
* **DownBlock**: a strided 3×3(×3) convolution (``down="conv"``, learnable) or a 2×
  max-pool (``down="maxpool"``, rigid).
* **UpBlock**: the paper's 3×3(×3) stride-2 transposed convolution keeping the
  channels (``up="transposed3"``), rigid nearest-neighbour up-sampling (``"rigid"``),
  a 2×2(×2) stride-2 transposed convolution halving them (``"transposed"``, the
  default), or nearest up-sampling then a 1×1 convolution (``"upsample"``).
* Options of the paper's ablations and Table B.3: ``separable`` convolutions,
  ``norm="layer"``, ``noise_sigma`` (Gaussian noise on the input while training),
  ``bn_momentum``; and ``residual=False`` for the plain U-Net block of the PXCT and
  noise-robustness studies.
* ``skip=False`` drops the skip connections (the best stage-3 model of the SR-CT
  pseudo-label paper, not the Modular U-Net paper's: it cannot copy noisy pseudo
  labels straight through).
* ``context=k`` (2D only) is the 2.5D variant: ``k`` adjacent slices enter as
  channels and the output is the segmentation of the middle slice.

Inputs whose spatial size is not a multiple of ``2**depth`` are **padded** (edge
replication, split evenly on both sides) and the output is **cropped back**, so any
size works; the padding is what a tile at the volume's edge would see anyway.
"""

from __future__ import annotations

import torch
from torch import nn

from xctdask.models import blocks
from xctdask.models.base import Network, arguments, crop_back, pad_to_multiple, spatial_sizes
from xctdask.models.registry import register

__all__ = ["ConvBlock", "ModularUNet"]


class ConvBlock(nn.Module):
    """Two convolutions with norm before each activation, a residual 1×1, dropout.

    ``residual=False`` drops the residual (the plain U-Net block of the PXCT and
    noise-robustness studies); ``separable=True`` makes both convolutions depthwise
    separable (the Modular U-Net paper's ablation).
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        *,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        residual: bool = True,
        separable: bool = False,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        make = blocks.separable_conv if separable else blocks.conv
        bias = norm == "none"
        self.body = nn.Sequential(
            make(dims, in_channels, out_channels, 3, padding=1, bias=bias),
            blocks.norm(norm, dims, out_channels, momentum=bn_momentum),
            blocks.activation(activation, out_channels),
            make(dims, out_channels, out_channels, 3, padding=1, bias=bias),
            blocks.norm(norm, dims, out_channels, momentum=bn_momentum),
            blocks.activation(activation, out_channels),
        )
        self.residual = blocks.conv(dims, in_channels, out_channels, 1) if residual else None
        self.dropout = blocks.dropout(dims, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual is not None:
            y = y + self.residual(x)
        return self.dropout(y)


DOWNS = ("conv", "maxpool")
UPS = ("transposed", "transposed3", "upsample", "rigid")


def _down(dims: int, channels: int, kind: str) -> nn.Module:
    if kind == "conv":
        return blocks.conv(dims, channels, channels, 3, stride=2, padding=1)
    if kind == "maxpool":
        return blocks.pool(dims, 2)
    raise ValueError(f"down must be one of {DOWNS}, got {kind!r}")


def _up(dims: int, in_channels: int, out_channels: int, kind: str) -> nn.Module:
    if kind == "transposed":
        return blocks.conv_transpose(dims, in_channels, out_channels, 2, stride=2)
    if kind == "transposed3":  # the paper's: 3×3 transposed, stride 2, channels kept
        return blocks.conv_transpose(
            dims, in_channels, in_channels, 3, stride=2, padding=1, output_padding=1
        )
    if kind == "upsample":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            blocks.conv(dims, in_channels, out_channels, 1),
        )
    if kind == "rigid":  # no parameters: nearest-neighbour, channels kept
        return nn.Upsample(scale_factor=2, mode="nearest")
    raise ValueError(f"up must be one of {UPS}, got {kind!r}")


class ModularUNet(Network):
    """U-Net built from ConvBlock / DownBlock / UpBlock; see the module docstring.

    Parameters
    ----------
    in_channels, n_classes : int
        Channels per input slice (or volume) and output classes.
    dims : {2, 3}
        Slice network (2D, 2.5D) or volume network (3D).
    depth : int
        Number of down-samplings (the input is padded to a multiple of ``2**depth``).
    f0 : int
        Feature maps at the top level; level ``l`` has ``f0 · 2**l``.
    skip : bool
        Keep the skip connections.
    context : int
        Odd number of adjacent slices given as channels (2D only; 1 = plain 2D).
    down : {"conv", "maxpool"}
        The paper's learnable DownBlock ("a 3 × 3 convolution with 2 × 2 stride") or
        its rigid one (2× max-pool).
    up : {"transposed", "transposed3", "upsample", "rigid"}
        ``"transposed3"`` is the paper's UpBlock, "a 3 × 3 transposed convolution with
        2 × 2 stride" keeping the channels; ``"rigid"`` up-samples without parameters
        (nearest neighbour); ``"transposed"`` (2×2, halving the channels, the default)
        and ``"upsample"`` (nearest + 1×1 convolution) are common variants.
    norm : {"batch", "group", "instance", "layer", "none"}
    activation : {"relu", "prelu", "leaky_relu"}
    dropout : float
        Dropout at the end of every ConvBlock.
    residual : bool
        The ConvBlock's residual 1×1 convolution (False: the plain U-Net block).
    separable : bool
        Depthwise-separable 3×3 convolutions in the ConvBlocks.
    noise_sigma : float
        Zero-mean Gaussian noise added to the input while training (Table B.3: 0.03).
    bn_momentum : float
        BatchNorm momentum in PyTorch's convention (running ← (1 − m)·running + m·batch);
        Keras's momentum ``k`` is ``m = 1 − k``: the paper's 0.5 is 0.5 in both.
    task : {"segment", "denoise"}
        ``"segment"``: ``n_classes`` logits (outputs ``("logits",)``); ``"denoise"``: an
        image of ``in_channels`` channels (outputs ``("denoised",)``, trained with MSE
        against a clean scan).

    Input ``(N, in_channels · context, H, W)`` (or ``(N, in_channels, context, H, W)``)
    for 2D, ``(N, in_channels, D, H, W)`` for 3D; output logits ``(N, n_classes, ...)``
    with the input's spatial size.

    Examples
    --------
    >>> net = ModularUNet(1, 3, dims=2, depth=2, f0=4, context=3)
    >>> net(torch.zeros(2, 3, 13, 21)).shape
    torch.Size([2, 3, 13, 21])
    >>> net.halo
    (1, 26, 26)
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        *,
        dims: int = 2,
        depth: int = 4,
        f0: int = 32,
        skip: bool = True,
        context: int = 1,
        down: str = "conv",
        up: str = "transposed",
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        residual: bool = True,
        separable: bool = False,
        noise_sigma: float = 0.0,
        bn_momentum: float = 0.1,
        task: str = "segment",
    ):
        config = dict(locals())
        super().__init__()
        dims = blocks.check_dims(dims)
        if task not in ("segment", "denoise"):
            raise ValueError(f"task must be 'segment' or 'denoise', got {task!r}")
        if not isinstance(depth, int) or not 1 <= depth <= 7:
            raise ValueError(f"depth must be an integer in 1..7, got {depth!r}")
        if not isinstance(f0, int) or f0 < 1:
            raise ValueError(f"f0 must be a positive integer, got {f0!r}")
        if not isinstance(context, int) or context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd integer, got {context!r}")
        if context > 1 and dims != 2:
            raise ValueError("context (2.5D) applies to 2D networks only; use dims=2")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not noise_sigma >= 0:
            raise ValueError(f"noise_sigma must be non-negative, got {noise_sigma!r}")
        if not 0 < bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum!r}")
        if down not in DOWNS:
            raise ValueError(f"down must be one of {DOWNS}, got {down!r}")
        if up not in UPS:
            raise ValueError(f"up must be one of {UPS}, got {up!r}")
        self.config = arguments("unet2d" if dims == 2 else "unet3d", config)
        del self.config["dims"]
        self.spatial_dims = dims
        self.depth, self.skip, self.context = depth, skip, context
        self.multiple = 2**depth  # input sizes are padded to a multiple of this
        self.in_channels = in_channels
        self.n_classes = n_classes if task == "segment" else 0
        self.outputs = ("logits",) if task == "segment" else ("denoised",)
        options = {
            "norm": norm,
            "activation": activation,
            "dropout": dropout,
            "residual": residual,
            "separable": separable,
            "bn_momentum": bn_momentum,
        }
        self.noise = blocks.GaussianNoise(noise_sigma)
        widths = [f0 * 2**level for level in range(depth + 1)]
        self.top = ConvBlock(dims, in_channels * context, widths[0], **options)
        self.encoder = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level in range(1, depth + 1):
            self.downs.append(_down(dims, widths[level - 1], down))
            self.encoder.append(ConvBlock(dims, widths[level - 1], widths[level], **options))
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(_up(dims, widths[level + 1], widths[level], up))
            arriving = widths[level + 1] if up in ("transposed3", "rigid") else widths[level]
            joined = arriving + widths[level] if skip else arriving
            self.decoder.append(ConvBlock(dims, joined, widths[level], **options))
        out_channels = n_classes if task == "segment" else in_channels
        self.head = blocks.conv(dims, widths[0], out_channels, 1)
        # receptive-field margin: 2 convs per ConvBlock on each level, one strided conv
        # down and one up-sampling per level below the top (an upper bound)
        radius = 2 * (2 ** (depth + 1) - 1) + 4 * (2**depth - 1)
        z = radius if dims == 3 else (context - 1) // 2
        self.halo = (z, radius, radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 2 and x.dim() == 5:  # (N, C, context, H, W) → channels
            x = x.flatten(1, 2)
        expected = self.in_channels * self.context
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != expected:
            raise ValueError(
                "expected input of shape (N, "
                + str(expected)
                + ", "
                + str(self.spatial_dims)
                + " spatial axes); got "
                + str(list(x.shape))
            )
        sizes = spatial_sizes(x)
        x, before = pad_to_multiple(x, self.multiple)
        x = self.top(self.noise(x))
        skips: list[torch.Tensor] = [x]
        for down, block in zip(self.downs, self.encoder):  # noqa: B905 (TorchScript)
            x = block(down(x))
            skips.append(x)
        level = self.depth - 1
        for up, block in zip(self.ups, self.decoder):  # noqa: B905 (TorchScript)
            x = up(x)
            if self.skip:
                x = torch.cat([x, skips[level]], dim=1)
            x = block(x)
            level -= 1
        return crop_back(self.head(x), before, sizes)


@register("unet2d", spatial_dims=2)
def unet2d(in_channels: int = 1, n_classes: int = 2, **options) -> ModularUNet:
    """2D (and, with ``context=k``, 2.5D) Modular U-Net."""
    return ModularUNet(in_channels, n_classes, dims=2, **options)


@register("unet3d", spatial_dims=3)
def unet3d(in_channels: int = 1, n_classes: int = 2, **options) -> ModularUNet:
    """3D Modular U-Net."""
    return ModularUNet(in_channels, n_classes, dims=3, **options)
