"""Pix2Pix for segmentation: a U-Net generator with residual blocks, a PatchGAN critic.

As in the PXCT U-Net vs Pix2Pix study, the generator translates the CT slice into the
label map (``n_classes`` logits; train it with :class:`xctdask.losses.Pix2PixLoss`,
adversarial + L1) and the discriminator is conditional: it sees the input slice
concatenated with a (real one-hot or generated softmax) label map and scores
overlapping patches (the 70×70 PatchGAN of Isola et al. for ``n_layers=3``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xctdask.models import blocks
from xctdask.models.base import Network, arguments
from xctdask.models.registry import register
from xctdask.models.unet import ModularUNet

__all__ = ["PatchDiscriminator", "Pix2Pix"]


class PatchDiscriminator(nn.Module):
    """PatchGAN: stride-2 4×4 convs (C64-C128-C256), a stride-1 C512, a 1-channel map.

    Examples
    --------
    >>> d = PatchDiscriminator(4, base=8)
    >>> d(torch.zeros(2, 4, 64, 64)).shape
    torch.Size([2, 1, 6, 6])
    """

    def __init__(self, in_channels: int, *, base: int = 64, n_layers: int = 3, dims: int = 2):
        super().__init__()
        dims = blocks.check_dims(dims)
        layers: list[nn.Module] = [
            blocks.conv(dims, in_channels, base, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base
        for i in range(1, n_layers + 1):
            out = base * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                blocks.conv(dims, channels, out, 4, stride=stride, padding=1, bias=False),
                blocks.norm("instance", dims, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers.append(blocks.conv(dims, channels, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Pix2Pix(Network):
    """Generator (``forward``) plus ``discriminator``; see the module docstring.

    Parameters
    ----------
    in_channels, n_classes : int
    depth, f0, norm, dropout : generator options (a residual Modular U-Net; the
        Pix2Pix generator uses dropout 0.5 in its decoder, here in every block).
    disc_base, disc_layers : PatchGAN width and depth.
    dims : {2, 3}

    Examples
    --------
    >>> net = Pix2Pix(1, 3, depth=2, f0=4, disc_base=4)
    >>> net(torch.zeros(1, 1, 30, 30)).shape
    torch.Size([1, 3, 30, 30])
    >>> net.discriminate(torch.zeros(1, 1, 32, 32), torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 1, 2, 2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        *,
        dims: int = 2,
        depth: int = 4,
        f0: int = 32,
        norm: str = "instance",
        dropout: float = 0.0,
        disc_base: int = 64,
        disc_layers: int = 3,
    ):
        config = dict(locals())
        super().__init__()
        self.generator = ModularUNet(
            in_channels,
            n_classes,
            dims=dims,
            depth=depth,
            f0=f0,
            norm=norm,
            activation="relu",
            dropout=dropout,
        )
        self.discriminator = PatchDiscriminator(
            in_channels + n_classes, base=disc_base, n_layers=disc_layers, dims=dims
        )
        self.config = arguments("pix2pix", config)
        self.spatial_dims = dims
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.halo = self.generator.halo

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of the generator (what inference runs)."""
        return self.generator.n_parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)

    # -------------------------------------------------------------- training
    def default_loss(self, class_weights=None) -> nn.Module:
        """Adversarial + 100·L1 (the PXCT paper's Pix2Pix); class weights do not apply."""
        from xctdask.losses import Pix2PixLoss

        return Pix2PixLoss()

    def optimizer_groups(self, config) -> list[dict]:
        """The generator's parameters; the discriminator has its own optimiser."""
        return [{"params": list(self.generator.parameters()), "lr": config.lr}]

    def extra_optimizers(self, config, make) -> dict:
        """The discriminator's Adam with β₁ = 0.5 (Isola et al.)."""
        betas = (0.5, 0.999)
        return {"discriminator": make(self.discriminator.parameters(), lr=config.lr, betas=betas)}

    def training_step(self, batch: dict, ctx) -> torch.Tensor:
        """A discriminator update on real one-hot vs generated label maps, then a
        generator update (adversarial + L1 on labelled voxels)."""
        image, target = batch["image"], batch["target"]
        n_classes = self.n_classes
        with ctx.autocast():
            logits = self(image)
            probs = F.softmax(logits.float(), dim=1)
            valid = (target != 255).unsqueeze(1)
            real = F.one_hot(target.clamp(max=n_classes - 1).long(), n_classes)
            real = real.movedim(-1, 1).float() * valid
            d_loss = ctx.loss.discriminator(
                self.discriminate(image, real), self.discriminate(image, probs.detach())
            )
        ctx.optimize(d_loss, "discriminator")
        with ctx.autocast():
            g_loss = ctx.loss.generator(self.discriminate(image, probs), logits, target)
        ctx.optimize(g_loss, "main")
        ctx.logs["discriminator_loss"] = float(d_loss.detach())
        return g_loss.detach()

    def discriminate(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Patch logits (real > 0) for an image and a label map (probabilities)."""
        return self.discriminator(torch.cat([image, labels], dim=1))


@register("pix2pix", spatial_dims=2)
def pix2pix(in_channels: int = 1, n_classes: int = 2, **options) -> Pix2Pix:
    """Pix2Pix: residual U-Net generator and PatchGAN discriminator."""
    return Pix2Pix(in_channels, n_classes, **options)
