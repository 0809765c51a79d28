"""One preset per paper: its network, loss, optimiser, schedule, patch, batch and
augmentation, with where each value comes from.

``xd.segment``'s defaults are what works best on this project's benchmarks; a preset is
for people who want a paper's setting: ``xd.Segmenter(preset="modular-unet-2.5d")``,
``xd.segment(vol, clean=hq, preset="stacked-denseuseg")`` or ``xctdask segment
--preset NAME``. A preset fixes the network and how it trains; the number of classes
and of steps stay the caller's (papers count epochs of their own data sets).

Values a paper does not state (or that did not survive in the text we have) keep this
library's defaults, and :attr:`Preset.sources` says so.

Examples
--------
>>> from xctdask import presets
>>> sorted(presets.PRESETS)[:3]
['modular-unet-2.5d', 'modular-unet-2d', 'modular-unet-3d']
>>> p = presets.get("modular-unet-2.5d")
>>> p.model, p.model_options["depth"], p.context, p.train["loss"]
('unet2d', 3, 5, 'jaccard2')
>>> net = p.build(n_classes=3)
>>> net.context, net.config["noise_sigma"]
(5, 0.03)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "Preset", "get"]


@dataclass(frozen=True)
class Preset:
    """A paper's setting.

    Attributes
    ----------
    name, paper : str
    model : str
        A network of the zoo (:func:`xctdask.models.available`).
    model_options : dict
        Keyword arguments of :func:`xctdask.models.build` (besides the classes).
    patch : int
        Training patch side (y and x; z too for 3-D networks).
    context : int
        Slices a 2.5D network sees (1 otherwise).
    train : dict
        Stage-2 options (:class:`xctdask.engine.FitConfig` fields); ``loss`` is a name of
        :func:`xctdask.losses.build_loss`, ``loss_options`` its arguments, ``strong``
        the strong augmentation's operations.
    self_correct : dict
        Stage-3 options (:class:`xctdask.engine.SelfCorrectConfig` fields), same
        conventions; empty when the paper has no stage 3.
    sources : dict
        Setting → where its value comes from.
    """

    name: str
    paper: str
    model: str
    model_options: dict[str, Any]
    patch: int
    context: int = 1
    train: dict[str, Any] = field(default_factory=dict)
    self_correct: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def build(self, n_classes: int, in_channels: int = 1) -> Any:
        """The preset's network for ``n_classes`` classes."""
        from xctdask import models

        options = dict(self.model_options)
        if self.context > 1:
            options["context"] = self.context
        return models.build(self.model, in_channels, n_classes, **options)

    def fit_options(self, stage: str = "train") -> dict[str, Any]:
        """The stage's options ready for :func:`xctdask.train` /
        :func:`xctdask.self_correct`: the loss built, the strong augmentation made."""
        from xctdask import augment, losses

        options = dict(self.train if stage == "train" else self.self_correct)
        if "loss" in options:
            options["loss"] = losses.build_loss(
                options.pop("loss"), **options.pop("loss_options", {})
            )
        if "strong" in options:
            options["strong"] = augment.StrongAugment(ops=tuple(options.pop("strong")))
        return options


_MODULAR = "Modular U-Net (Tomo2Seg), Table B.3 and Appendix C"
_MODULAR_UNET = {
    "depth": 3,
    "f0": 16,
    "dropout": 0.1,
    "noise_sigma": 0.03,
    "bn_momentum": 0.5,
    "down": "conv",
    "up": "transposed3",
    "skip": True,
}
_MODULAR_TRAIN = {
    "loss": "jaccard2",
    "optimizer": "adabelief",
    "lr": 1e-3,
    "schedule": "linear",
    "decay_start": 0.5,
    "final_lr": 0.1,
    "batch_size": 10,
}
_MODULAR_SOURCES = {
    "depth 3, f0 16, dropout 10 %, Gaussian noise 0.03, BatchNorm momentum 0.5, "
    "crop, batch 10": "Table B.3",
    "DownBlock 3×3 stride 2, UpBlock 3×3 transposed stride 2": "Section 2.1",
    "Jaccard2 loss": "Appendix C, Eq. C.2",
    "AdaBelief, 1e-3 for 100 epochs then linear decay to 1e-4 over another 100": (
        "Appendix C ('Optimizer and Learning Rate')"
    ),
}

PRESETS: dict[str, Preset] = {
    "modular-unet-2d": Preset(
        "modular-unet-2d",
        _MODULAR,
        "unet2d",
        _MODULAR_UNET,
        160,
        1,
        _MODULAR_TRAIN,
        {},
        {**_MODULAR_SOURCES, "crop 160×160": "Table B.3"},
    ),
    "modular-unet-2.5d": Preset(
        "modular-unet-2.5d",
        _MODULAR,
        "unet2d",
        _MODULAR_UNET,
        160,
        5,
        _MODULAR_TRAIN,
        {},
        {**_MODULAR_SOURCES, "crop 160×160×5 (5 slices of context)": "Table B.3"},
    ),
    "modular-unet-3d": Preset(
        "modular-unet-3d",
        _MODULAR,
        "unet3d",
        _MODULAR_UNET,
        32,
        1,
        _MODULAR_TRAIN,
        {},
        {**_MODULAR_SOURCES, "crop 32×32×32": "Table B.3"},
    ),
    "sr-ct-unsupervised": Preset(
        "sr-ct-unsupervised",
        "Self-correcting pseudo labels for SR-CT (Unbiased Teacher)",
        "unet2d",
        {
            "depth": 4,
            "f0": 16,
            "skip": False,
            "norm": "group",
            "activation": "prelu",
            "dropout": 0.1,
        },
        128,
        7,
        {"label_smoothing": 0.1, "optimizer": "adam", "batch_size": 16},
        {
            "label_smoothing": 0.1,
            "optimizer": "adam",
            "batch_size": 16,
            "strong": ["gamma", "contrast", "clahe"],
        },
        {
            "group normalisation, PReLU, dropout": "Section IV (training environment)",
            "U-Net without skips (the best stage-3 model), ≈ 2 M parameters at depth 4, "
            "f0 16": "its model comparison",
            "7 slices of context": "its 2.5D input",
            "cross entropy with label smoothing in both stages": "Table II and the text "
            "after it ('The remaining experiments are conducted using the cross entropy "
            "loss with label smoothing')",
            "Adam, batch 16": "Section IV",
            "strong = gamma, colour jitter and brightness/contrast (contrast), CLAHE; weak = "
            "D4 (always on)": "Section IV",
            "label-smoothing ε 0.1, dropout 0.1, learning rate, crop size": "not stated in "
            "the text we have: this library's values",
        },
    ),
    "stacked-denseuseg": Preset(
        "stacked-denseuseg",
        "Stacked-DenseUSeg (denoise + segment low-dose 4D tomograms)",
        "stacked-denseuseg",
        {
            "k0": 32,
            "growth": 64,
            "n_blocks": 4,
            "modules_per_block": 4,
            "denoise_dropout": 0.2,
            "segment_dropout": 0.0,
        },
        64,
        1,
        {
            "optimizer": "adam",
            "lr": 1e-4,
            "lr_segment": 1e-5,
            "weight_decay": 5e-4,
            "batch_size": 8,
            "class_weights": True,
            "schedule": "constant",
        },
        {},
        {
            "k0 32, growth 64, 4 dense blocks of 4 modules, dropout 0.2 (denoiser) and 0 "
            "(segmenter)": "Section 3",
            "weighted CE (W = median(P/S)/(P/S)) + 10 × MSE": "Section 4",
            "Adam 1e-4 (denoise) / 1e-5 (segment), weight decay 5e-4, batch 8": "Section 4",
            "64³ patches": "its sample size",
        },
    ),
    "pix2pix-pxct": Preset(
        "pix2pix-pxct",
        "PXCT: U-Net vs Pix2Pix",
        "pix2pix",
        {},
        256,
        1,
        {
            "optimizer": "adam",
            "lr": 2e-3,
            "betas": (0.9, 0.999),
            "batch_size": 4,
            "schedule": "constant",
        },
        {},
        {
            "Adam, lr 2e-3, batch 4, β₁ 0.9": "Table 1",
            "residual blocks in the generator": "Discussion",
        },
    ),
    "unet-pxct": Preset(
        "unet-pxct",
        "PXCT: U-Net vs Pix2Pix",
        "unet2d",
        {"depth": 4, "f0": 16, "skip": True, "residual": False, "down": "maxpool"},
        256,
        1,
        {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "schedule": "constant"},
        {},
        {
            "Adam, lr 1e-3, batch 32": "Table 1",
            "plain U-Net (no residual blocks), max-pooling": "Section 2.2.2 and Discussion",
        },
    ),
}


def get(name: str) -> Preset:
    """The preset called ``name`` (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
