"""DenseUSeg and Stacked-DenseUSeg (denoise + segment low-dose 4D tomograms).

DenseUSeg (after the Stacked-DenseUSeg paper):

* **stem**: three 3×3×3 convolutions to ``k0`` (32) maps, each followed by BN + ReLU;
  these are the *initial maps* at full resolution;
* "a 2x2x2 convolution with stride 2 to reduce their scale";
* **four dense blocks** of four modules each; a module is BN-ReLU-Conv 1×1×1
  (bottleneck, ``4·g`` maps) then BN-ReLU-Conv 3×3×3 (``g`` = 64 new maps), dropout
  after the module, and its output is concatenated to its input;
* between dense blocks a **transition**: BN-ReLU-Conv 1×1×1 compressing the maps by
  θ = 0.5, then BN-ReLU-Conv 2×2×2 with stride 2 ("before each convolutional layer in
  the Dense and Transition Blocks ... batch normalisation and the Rectified Linear Unit
  (ReLU) are employed");
* an **expansive path**: per level a 4×4×4 transposed convolution (stride 2, padding 1)
  halving the maps, concatenation with the skip (the dense block's output of that
  level, and finally the initial maps), then two 3×3×3 convolutions (BN + ReLU) that
  halve the concatenated maps;
* a 1×1×1 convolution to the classes.

The input is padded to a multiple of 16 and the output cropped back. ``dims=2`` gives
the 2D variant with the same structure.

Stacked-DenseUSeg shares the stem: a denoising DenseUSeg body (dropout 0.2) predicts
the denoised volume; its last feature maps pass a 3×3×3 convolution and are added to
the initial maps to feed a segmenting body (dropout 0). ``forward`` returns
``(denoised, logits)``; :meth:`StackedDenseUSeg.param_groups` gives the two parts their
own learning rates (1e-4 denoise, 1e-5 segment in the paper). It trains, as the paper
does, with a class-weighted cross entropy, "W = median(P/S)/(P/S) where P is a vector
of the pixel counts of the different classes and S is a vector that contains in how
many samples of each class are present", plus 10 × the MSE to the clean scan.
"""

from __future__ import annotations

import torch
from torch import nn

from xctdask.models import blocks
from xctdask.models.base import Network, arguments, crop_back, pad_to_multiple, spatial_sizes
from xctdask.models.registry import register

__all__ = ["DenseUSeg", "StackedDenseUSeg"]


def _bn_relu_conv(dims: int, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """BN-ReLU before a convolution (odd kernels keep the size; 2 with stride 2 halves)."""
    padding = kernel // 2 if kernel % 2 else 0
    return nn.Sequential(
        blocks.norm("batch", dims, cin),
        nn.ReLU(inplace=True),
        blocks.conv(dims, cin, cout, kernel, stride=stride, padding=padding, bias=False),
    )


def _conv_bn_relu(dims: int, cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        blocks.conv(dims, cin, cout, kernel, padding=kernel // 2, bias=False),
        blocks.norm("batch", dims, cout),
        nn.ReLU(inplace=True),
    )


class _DenseModule(nn.Module):
    def __init__(self, dims: int, cin: int, growth: int, bottleneck: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            _bn_relu_conv(dims, cin, bottleneck, 1),
            _bn_relu_conv(dims, bottleneck, growth, 3),
            blocks.dropout(dims, dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class _Stem(nn.Module):
    """Three 3×3(×3) conv-BN-ReLU to ``k0`` maps: the initial maps."""

    def __init__(self, dims: int, in_channels: int, k0: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(dims, in_channels, k0),
            _conv_bn_relu(dims, k0, k0),
            _conv_bn_relu(dims, k0, k0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _DenseBody(nn.Module):
    """Everything after the stem: down path of dense blocks, expansive path.

    ``forward(initial_maps)`` returns the last feature maps (before the 1×1 output).
    """

    def __init__(
        self,
        dims: int,
        k0: int,
        growth: int,
        n_blocks: int,
        modules_per_block: int,
        compression: float,
        dropout: float,
    ):
        super().__init__()
        bottleneck = 4 * growth
        # "a 2x2x2 convolution with stride 2" after the stem (whose convolutions end in
        # BN-ReLU already)
        self.down = blocks.conv(dims, k0, k0, 2, stride=2, padding=0, bias=False)
        self.dense = nn.ModuleList()
        self.transitions = nn.ModuleList()
        channels, skips = k0, []
        for b in range(n_blocks):
            modules = []
            for _ in range(modules_per_block):
                modules.append(_DenseModule(dims, channels, growth, bottleneck, dropout))
                channels += growth
            self.dense.append(nn.Sequential(*modules))
            skips.append(channels)
            if b < n_blocks - 1:
                squeezed = max(1, int(channels * compression))
                self.transitions.append(
                    nn.Sequential(  # BN-ReLU before each of its convolutions
                        _bn_relu_conv(dims, channels, squeezed, 1),
                        _bn_relu_conv(dims, squeezed, squeezed, 2, stride=2),
                    )
                )
                channels = squeezed
            else:
                self.transitions.append(nn.Identity())  # the bottom block: no transition
        # expansive path: skips of dense blocks n-2 .. 0, then the initial maps
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for skip in [*skips[-2::-1], k0]:
            up = max(1, channels // 2)
            self.ups.append(blocks.conv_transpose(dims, channels, up, 4, stride=2, padding=1))
            joined = up + skip
            out = max(1, joined // 2)
            self.fuse.append(
                nn.Sequential(_conv_bn_relu(dims, joined, out), _conv_bn_relu(dims, out, out))
            )
            channels = out
        self.out_channels = channels
        self.levels = n_blocks  # down-samplings: the first conv plus the transitions
        self.multiple = 2**n_blocks

    def forward(self, initial: torch.Tensor) -> torch.Tensor:
        x = self.down(initial)
        skips: list[torch.Tensor] = []
        for block, transition in zip(self.dense, self.transitions):  # noqa: B905 (TorchScript)
            x = block(x)
            skips.append(x)
            x = transition(x)
        # the expansive path meets the dense blocks' outputs bottom-up, then the stem's
        skips = skips[:-1]
        skips.reverse()
        skips.append(initial)
        i = 0
        for up, fuse in zip(self.ups, self.fuse):  # noqa: B905 (TorchScript)
            x = fuse(torch.cat([up(x), skips[i]], dim=1))
            i += 1
        return x


def _halo(n_levels: int, modules_per_block: int) -> int:
    """Receptive-field margin (an upper bound, in input voxels)."""
    radius = 3  # the stem's three 3×3 convs
    for level in range(1, n_levels + 1):
        scale = 2**level
        radius += scale // 2  # the 2×2 stride-2 conv entering this level
        radius += modules_per_block * scale  # one 3×3 conv per dense module
    for level in range(n_levels - 1, -1, -1):
        scale = 2**level
        radius += scale * 2 + 2 * scale  # 4×4 transposed conv + two 3×3 convs
    return radius


def _check(k0, growth, n_blocks, modules_per_block, compression, dropout):
    for name, value in (
        ("k0", k0),
        ("growth", growth),
        ("n_blocks", n_blocks),
        ("modules_per_block", modules_per_block),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1], got {compression!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


class DenseUSeg(Network):
    """DenseUSeg; see the module docstring.

    Examples
    --------
    >>> net = DenseUSeg(1, 3, dims=2, k0=4, growth=4, n_blocks=2, modules_per_block=1)
    >>> net(torch.zeros(1, 1, 9, 10)).shape
    torch.Size([1, 3, 9, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        *,
        dims: int = 3,
        k0: int = 32,
        growth: int = 64,
        n_blocks: int = 4,
        modules_per_block: int = 4,
        compression: float = 0.5,
        dropout: float = 0.2,
    ):
        config = dict(locals())
        super().__init__()
        dims = blocks.check_dims(dims)
        _check(k0, growth, n_blocks, modules_per_block, compression, dropout)
        self.config = arguments("denseuseg" if dims == 3 else "denseuseg2d", config)
        del self.config["dims"]
        self.spatial_dims = dims
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.stem = _Stem(dims, in_channels, k0)
        self.body = _DenseBody(dims, k0, growth, n_blocks, modules_per_block, compression, dropout)
        self.head = blocks.conv(dims, self.body.out_channels, n_classes, 1)
        radius = _halo(n_blocks, modules_per_block)
        self.halo = (radius if dims == 3 else 0, radius, radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.spatial_dims, self.in_channels)
        sizes = spatial_sizes(x)
        x, before = pad_to_multiple(x, self.body.multiple)
        return crop_back(self.head(self.body(self.stem(x))), before, sizes)


class StackedDenseUSeg(Network):
    """Shared stem, a denoising DenseUSeg body, a segmenting one; ``(denoised, logits)``.

    Examples
    --------
    >>> net = StackedDenseUSeg(1, 2, k0=4, growth=4, n_blocks=2, modules_per_block=1)
    >>> denoised, logits = net(torch.zeros(1, 1, 8, 9, 10))
    >>> denoised.shape, logits.shape
    (torch.Size([1, 1, 8, 9, 10]), torch.Size([1, 2, 8, 9, 10]))
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        *,
        dims: int = 3,
        k0: int = 32,
        growth: int = 64,
        n_blocks: int = 4,
        modules_per_block: int = 4,
        compression: float = 0.5,
        denoise_dropout: float = 0.2,
        segment_dropout: float = 0.0,
    ):
        config = dict(locals())
        super().__init__()
        dims = blocks.check_dims(dims)
        _check(k0, growth, n_blocks, modules_per_block, compression, denoise_dropout)
        _check(k0, growth, n_blocks, modules_per_block, compression, segment_dropout)
        self.config = arguments("stacked-denseuseg", config)
        self.outputs = ("denoised", "logits")
        self.class_weighted = True  # the paper's weighted cross entropy
        self.spatial_dims = dims
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.stem = _Stem(dims, in_channels, k0)
        args = (dims, k0, growth, n_blocks, modules_per_block, compression)
        self.denoiser = _DenseBody(*args, denoise_dropout)
        self.denoise_head = blocks.conv(dims, self.denoiser.out_channels, in_channels, 1)
        self.bridge = blocks.conv(dims, self.denoiser.out_channels, k0, 3, padding=1)
        self.segmenter = _DenseBody(*args, segment_dropout)
        self.segment_head = blocks.conv(dims, self.segmenter.out_channels, n_classes, 1)
        radius = 2 * _halo(n_blocks, modules_per_block) + 1
        self.halo = (radius if dims == 3 else 0, radius, radius)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.spatial_dims, self.in_channels)
        sizes = spatial_sizes(x)
        x, before = pad_to_multiple(x, self.denoiser.multiple)
        initial = self.stem(x)
        features = self.denoiser(initial)
        denoised = self.denoise_head(features)
        logits = self.segment_head(self.segmenter(initial + self.bridge(features)))
        return crop_back(denoised, before, sizes), crop_back(logits, before, sizes)

    def optimizer_groups(self, config) -> list[dict]:
        """The paper's two learning rates: ``config.lr`` for stem and denoiser,
        ``config.lr_segment`` (default ``lr / 10``) for bridge and segmenter."""
        lr_segment = getattr(config, "lr_segment", None)
        return self.param_groups(config.lr, config.lr / 10 if lr_segment is None else lr_segment)

    def param_groups(self, lr_denoise: float = 1e-4, lr_segment: float = 1e-5) -> list[dict]:
        """Optimizer parameter groups: stem + denoiser, and bridge + segmenter.

        Examples
        --------
        >>> net = StackedDenseUSeg(1, 2, k0=4, growth=4, n_blocks=2, modules_per_block=1)
        >>> opt = torch.optim.Adam(net.param_groups())
        >>> [g["lr"] for g in opt.param_groups]
        [0.0001, 1e-05]
        """
        denoise = [
            *self.stem.parameters(),
            *self.denoiser.parameters(),
            *self.denoise_head.parameters(),
        ]
        segment = [
            *self.bridge.parameters(),
            *self.segmenter.parameters(),
            *self.segment_head.parameters(),
        ]
        return [
            {"params": denoise, "lr": lr_denoise, "name": "denoise"},
            {"params": segment, "lr": lr_segment, "name": "segment"},
        ]


def _check_input(x: torch.Tensor, dims: int, channels: int) -> None:
    if x.dim() != dims + 2 or x.shape[1] != channels:
        raise ValueError(
            "expected input of shape (N, "
            + str(channels)
            + ", "
            + str(dims)
            + " spatial axes); got "
            + str(list(x.shape))
        )


@register("denseuseg", spatial_dims=3)
def denseuseg(in_channels: int = 1, n_classes: int = 2, **options) -> DenseUSeg:
    """3D DenseUSeg (``dims=2`` for the 2D variant)."""
    options.setdefault("dims", 3)
    return DenseUSeg(in_channels, n_classes, **options)


@register("denseuseg2d", spatial_dims=2)
def denseuseg2d(in_channels: int = 1, n_classes: int = 2, **options) -> DenseUSeg:
    """2D DenseUSeg."""
    return DenseUSeg(in_channels, n_classes, dims=2, **options)


@register("stacked-denseuseg", spatial_dims=3)
def stacked_denseuseg(in_channels: int = 1, n_classes: int = 2, **options) -> StackedDenseUSeg:
    """Stacked-DenseUSeg: denoise then segment; returns ``(denoised, logits)``."""
    return StackedDenseUSeg(in_channels, n_classes, **options)
