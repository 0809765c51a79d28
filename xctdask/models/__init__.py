"""The model zoo: every network of the seed papers, addressable by name.

>>> import xctdask as xd
>>> net = xd.models.build("unet2d", in_channels=1, n_classes=3, context=5, skip=False)
>>> net.halo[0]       # a 2.5D network looks two slices up and down
2

| name | network |
|---|---|
| ``unet2d``, ``unet3d`` | Modular U-Net (``context=k``: 2.5D; ``skip=False``: no skips) |
| ``denseuseg``, ``denseuseg2d`` | DenseUSeg: dense blocks + U-Net expansive path |
| ``stacked-denseuseg`` | denoising DenseUSeg feeding a segmenting one |
| ``pix2pix`` | residual U-Net generator + PatchGAN discriminator |
"""

from xctdask.models import denseuseg, pix2pix, unet  # noqa: F401  (register the models)
from xctdask.models.base import Network, WrappedNetwork, as_network, wrap
from xctdask.models.denseuseg import DenseUSeg, StackedDenseUSeg
from xctdask.models.pix2pix import PatchDiscriminator, Pix2Pix
from xctdask.models.registry import available, build, register
from xctdask.models.store import load, save
from xctdask.models.unet import ConvBlock, ModularUNet

__all__ = [
    "ConvBlock",
    "DenseUSeg",
    "ModularUNet",
    "Network",
    "PatchDiscriminator",
    "Pix2Pix",
    "StackedDenseUSeg",
    "WrappedNetwork",
    "as_network",
    "available",
    "build",
    "load",
    "register",
    "save",
    "wrap",
]
