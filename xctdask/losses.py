"""Losses of the seed papers. Segmentation losses ignore voxels labelled ``ignore_index``.

All take logits ``(N, C, ...)`` and integer targets ``(N, ...)``; 255 (the default
``ignore_index``) marks unlabelled voxels, e.g. the slices nobody annotated.

* :func:`class_weights`: W = median(P/S) / (P/S), P the voxel count of a class and S
  the number of training samples (patches) that contain it (the Stacked-DenseUSeg
  paper); :meth:`xctdask.PatchSampler.class_statistics` measures P and S.
* :class:`CrossEntropyLoss` (class weights, label smoothing), :class:`FocalLoss`,
  and the SR-CT paper's noisy-label losses: :class:`GeneralizedCrossEntropy`,
  :class:`SymmetricCrossEntropy`, :class:`BootstrappingLoss` (Reed et al.).
* :class:`TopKCrossEntropy` (the hardest ``top_k`` fraction of voxels only),
  :class:`DiceLoss`, :class:`Jaccard2Loss` (the Modular U-Net paper's Eq. C.2).
* :class:`DenoiseSegmentLoss`: CE + λ·MSE (λ = 10) for Stacked-DenseUSeg.
* :class:`Pix2PixLoss`: adversarial + L1 for the Pix2Pix generator, and the
  discriminator's loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xctdask.backend import UNLABELLED

__all__ = [
    "BootstrappingLoss",
    "CrossEntropyLoss",
    "DenoiseLoss",
    "DenoiseSegmentLoss",
    "DiceLoss",
    "FocalLoss",
    "GeneralizedCrossEntropy",
    "Jaccard2Loss",
    "Pix2PixLoss",
    "SymmetricCrossEntropy",
    "TopKCrossEntropy",
    "build_loss",
    "class_weights",
]

IGNORE = UNLABELLED


def class_weights(pixel_counts: Any, sample_counts: Any) -> torch.Tensor:
    """Class weights ``median(P/S) / (P/S)``.

    Parameters
    ----------
    pixel_counts : array of shape (C,)
        P: voxels of each class in the training set.
    sample_counts : array of shape (C,)
        S: number of training samples (patches or slices) containing the class.

    A class that never occurs gets weight 0.

    Examples
    --------
    >>> class_weights([900, 100], [10, 5]).tolist()
    [0.6111111044883728, 2.75]
    """
    p = np.asarray(pixel_counts, np.float64)
    s = np.asarray(sample_counts, np.float64)
    if p.shape != s.shape or p.ndim != 1:
        raise ValueError("pixel_counts and sample_counts must be 1-D and of equal length")
    if np.any(p < 0) or np.any(s < 0):
        raise ValueError("counts must be non-negative")
    present = (p > 0) & (s > 0)
    if not present.any():
        raise ValueError("no class occurs in the counts")
    freq = np.where(present, p / np.where(s > 0, s, 1), np.nan)
    weights = np.where(present, np.nanmedian(freq) / freq, 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"logits (N, C, ...) and target (N, ...) disagree: {tuple(logits.shape)} vs "
            f"{tuple(target.shape)}"
        )


def _one_hot(target: torch.Tensor, n_classes: int, valid: torch.Tensor) -> torch.Tensor:
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return F.one_hot(safe, n_classes).movedim(-1, 1).to(torch.float32)


class _SegmentationLoss(nn.Module):
    """Shared checks: shapes agree; nothing labelled gives 0 (with a graph), not NaN."""

    ignore_index: int | None = IGNORE

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target)
        valid = _valid(target, self.ignore_index)
        if not valid.any():
            return logits.sum() * 0.0
        return self.labelled_loss(logits, target, valid)

    def labelled_loss(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class CrossEntropyLoss(_SegmentationLoss):
    """Cross entropy with optional class weights and label smoothing.

    The mean is over labelled voxels (weighted by their class weight, as PyTorch's).

    Examples
    --------
    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])   # (N=1, C=2, W=2)
    >>> target = torch.tensor([[0, 255]])
    >>> round(CrossEntropyLoss()(logits, target).item(), 4)   # only the first voxel
    0.1269
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
        ignore_index: int = IGNORE,
    ):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def labelled_loss(self, logits, target, valid):
        return F.cross_entropy(
            logits.float(),
            target.long(),
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class FocalLoss(_SegmentationLoss):
    """Focal loss ``-(1 - p_t)^γ log p_t`` (Lin et al.), mean over labelled voxels.

    Examples
    --------
    >>> logits = torch.tensor([[[0.0], [0.0]]])                  # p_t = 0.5
    >>> round(FocalLoss(gamma=2)(logits, torch.tensor([[1]])).item(), 4)   # 0.25·ln 2
    0.1733
    """

    def __init__(
        self, gamma: float = 2.0, weight: torch.Tensor | None = None, ignore_index: int = IGNORE
    ):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.ignore_index = ignore_index

    def labelled_loss(self, logits, target, valid):
        logp = F.log_softmax(logits.float(), dim=1)
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -((1 - logp_t.exp()) ** self.gamma) * logp_t
        if self.weight is not None:
            loss = loss * self.weight[safe]
        return loss[valid].mean()


class BootstrappingLoss(_SegmentationLoss):
    """Bootstrapping (Reed et al. 2014, "Training deep neural networks on noisy labels
    with bootstrapping"), one of the SR-CT paper's confidence-calibration losses.

    The target is a mix of the (noisy) label and the model's own belief: ``β·y + (1−β)·p``
    with ``"soft"`` bootstrapping, ``β·y + (1−β)·onehot(argmax p)`` with ``"hard"``, and
    the loss is the cross entropy to it, ``−Σ_c t_c log p_c``, averaged over labelled
    voxels. Reed et al. use β = 0.95 (soft) and 0.8 (hard). The soft target keeps its
    gradient through ``p`` (the paper's minimum-entropy regularisation).

    Examples
    --------
    >>> logits = torch.tensor([[[2.0], [0.0]]])             # p = (0.881, 0.119)
    >>> target = torch.tensor([[1]])                        # the label says class 1
    >>> ce = BootstrappingLoss(beta=1.0)(logits, target)    # β = 1: plain CE
    >>> round(ce.item(), 4)
    2.1269
    >>> hard = BootstrappingLoss(beta=0.8, mode="hard")(logits, target)
    >>> round(hard.item(), 4)                               # 0.8·2.1269 + 0.2·0.1269
    1.7269
    """

    def __init__(self, beta: float = 0.95, mode: str = "soft", ignore_index: int = IGNORE):
        super().__init__()
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        if mode not in ("soft", "hard"):
            raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
        self.beta, self.mode, self.ignore_index = beta, mode, ignore_index

    def labelled_loss(self, logits, target, valid):
        log_p = F.log_softmax(logits.float(), dim=1)
        onehot = _one_hot(target, logits.shape[1], valid)
        if self.mode == "soft":
            belief = log_p.exp()
        else:
            belief = F.one_hot(log_p.argmax(1), logits.shape[1]).movedim(-1, 1).to(log_p.dtype)
        mixed = self.beta * onehot + (1 - self.beta) * belief
        return -(mixed * log_p).sum(1)[valid].mean()


class TopKCrossEntropy(_SegmentationLoss):
    """Cross entropy averaged over the hardest ``top_k`` fraction of labelled voxels.

    Online hard-example mining (Wu, Shen & van den Hengel 2016, who call it "online
    bootstrapping"; not Reed et al.'s bootstrapping, see :class:`BootstrappingLoss`):
    easy voxels, most of a CT volume, stop dominating the gradient.

    Examples
    --------
    >>> logits = torch.tensor([[[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]]])
    >>> target = torch.tensor([[0, 0, 1, 0]])     # per-voxel CE: 0.018, 0.693, 0.693, 4.018
    >>> round(TopKCrossEntropy(top_k=0.5)(logits, target).item(), 4)  # (4.018+0.693)/2
    2.3556
    """

    def __init__(self, top_k: float = 0.25, ignore_index: int = IGNORE):
        super().__init__()
        if not 0 < top_k <= 1:
            raise ValueError(f"top_k must be in (0, 1], got {top_k!r}")
        self.top_k = top_k
        self.ignore_index = ignore_index

    def labelled_loss(self, logits, target, valid):
        ce = F.cross_entropy(
            logits.float(), target.long(), reduction="none", ignore_index=self.ignore_index
        )[valid]
        k = max(1, round(self.top_k * ce.numel()))
        return ce.topk(k).values.mean()


class GeneralizedCrossEntropy(_SegmentationLoss):
    """Generalized cross entropy (Zhang & Sabuncu 2018): ``(1 − p_y^q) / q``.

    A robust loss for noisy labels, compared in the SR-CT paper's loss table: ``q → 0``
    gives the cross entropy, ``q = 1`` the mean absolute error. The paper's default is
    ``q = 0.7``.

    Examples
    --------
    >>> logits = torch.tensor([[[0.0], [0.0]]])            # p_y = 0.5
    >>> round(GeneralizedCrossEntropy(q=0.7)(logits, torch.tensor([[0]])).item(), 4)
    0.5492
    """

    def __init__(self, q: float = 0.7, ignore_index: int = IGNORE):
        super().__init__()
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q!r}")
        self.q, self.ignore_index = q, ignore_index

    def labelled_loss(self, logits, target, valid):
        p = F.softmax(logits.float(), dim=1)
        safe = torch.where(valid, target.long(), torch.zeros_like(target.long()))
        p_y = p.gather(1, safe.unsqueeze(1)).squeeze(1).clamp_min(1e-7)
        return ((1 - p_y**self.q) / self.q)[valid].mean()


class SymmetricCrossEntropy(_SegmentationLoss):
    """Symmetric cross entropy (Wang et al. 2019): ``α·CE + β·RCE``.

    The reverse cross entropy ``RCE = −Σ_c p_c log y_c`` takes ``log 0 = A`` (A = −4),
    so it equals ``−A·(1 − p_y)``. Compared in the SR-CT paper's loss table; α = 0.1,
    β = 1 are Wang et al.'s CIFAR-10 values.

    Examples
    --------
    >>> logits = torch.tensor([[[0.0], [0.0]]])            # p_y = 0.5
    >>> sce = SymmetricCrossEntropy(alpha=0.1, beta=1.0)
    >>> round(sce(logits, torch.tensor([[0]])).item(), 4)  # 0.1·0.6931 + 4·0.5
    2.0693
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        ignore_index: int = IGNORE,
    ):
        super().__init__()
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero
        self.ignore_index = ignore_index

    def labelled_loss(self, logits, target, valid):
        log_p = F.log_softmax(logits.float(), dim=1)
        safe = torch.where(valid, target.long(), torch.zeros_like(target.long()))
        log_p_y = log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
        rce = -self.log_zero * (1 - log_p_y.exp())
        return (self.alpha * -log_p_y + self.beta * rce)[valid].mean()


class _SoftOverlap(_SegmentationLoss):
    def __init__(self, ignore_index: int = IGNORE, eps: float = 1e-6):
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps

    def _terms(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        probs = F.softmax(logits.float(), dim=1) * valid.unsqueeze(1)
        onehot = _one_hot(target, logits.shape[1], valid) * valid.unsqueeze(1)
        axes = [0, *range(2, logits.ndim)]
        return probs, onehot, axes


class DiceLoss(_SoftOverlap):
    """Soft Dice, ``1 - mean_c 2 Σ p y / (Σ p + Σ y)``, over labelled voxels.

    Classes absent from both the target and the prediction are left out of the mean.

    Examples
    --------
    >>> logits = torch.tensor([[[10.0, -10.0], [-10.0, 10.0]]])   # confident, right
    >>> round(DiceLoss()(logits, torch.tensor([[0, 1]])).item(), 4)
    0.0
    """

    def labelled_loss(self, logits, target, valid):
        probs, onehot, axes = self._terms(logits, target, valid)
        inter = (probs * onehot).sum(axes)
        total = probs.sum(axes) + onehot.sum(axes)
        present = total > self.eps
        dice = (2 * inter + self.eps) / (total + self.eps)
        return 1 - dice[present].mean()


class Jaccard2Loss(_SoftOverlap):
    """The Modular U-Net paper's Jaccard2 loss (its Eq. C.2): one ratio over every
    labelled voxel ``i`` and class ``c`` of the batch,

    ``J2 = 1 − Σ_i Σ_c y_ic ŷ_ic / (Σ_i Σ_c y_ic² + Σ_i Σ_c ŷ_ic² − Σ_i Σ_c y_ic ŷ_ic)``,

    with ``y`` one-hot and ``ŷ`` the softmax. The sums run over classes *inside* the
    ratio (not a mean of per-class ratios), so rare classes weigh by their voxels.

    Examples
    --------
    >>> logits = torch.zeros(1, 2, 2)                # p = 0.5 everywhere
    >>> target = torch.tensor([[0, 1]])
    >>> round(Jaccard2Loss()(logits, target).item(), 4)   # 1 − 1 / (2 + 1 − 1)
    0.5
    """

    def labelled_loss(self, logits, target, valid):
        probs, onehot, _ = self._terms(logits, target, valid)
        inter = (probs * onehot).sum()
        union = (probs * probs).sum() + (onehot * onehot).sum() - inter
        return 1 - (inter + self.eps) / (union + self.eps)


def _finite_mse(denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the voxels where ``clean`` is finite (a clean scan with
    NaN outside its field of view): plain MSE when every voxel is. No host sync, so
    it costs a GPU step nothing extra."""
    denoised, clean = denoised.float(), clean.float()
    finite = torch.isfinite(clean)
    diff = torch.where(finite, denoised - clean.nan_to_num(), 0.0)
    return (diff * diff).sum() / finite.sum().clamp(min=1)


class DenoiseLoss(nn.Module):
    """Mean squared error of a denoised image against the clean scan (denoise-only
    training, as the Stacked-DenseUSeg paper trains its denoising baselines), over the
    clean scan's finite voxels.

    Examples
    --------
    >>> round(DenoiseLoss()(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item(), 3)
    1.0
    """

    def forward(self, denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        if denoised.shape != clean.shape:
            raise ValueError(f"denoised {tuple(denoised.shape)} vs clean {tuple(clean.shape)}")
        return _finite_mse(denoised, clean)


class DenoiseSegmentLoss(nn.Module):
    """``CE(logits, labels) + λ · MSE(denoised, clean)`` (λ = 10), for Stacked-DenseUSeg.

    ``forward((denoised, logits), (clean, labels))``; returns the total and keeps the
    two parts of the last call in ``last`` for logging.
    """

    def __init__(self, weight: float = 10.0, segmentation: nn.Module | None = None):
        super().__init__()
        self.weight = weight
        self.segmentation = segmentation or CrossEntropyLoss()
        self.last: dict[str, float] = {}

    def forward(self, outputs, targets) -> torch.Tensor:
        denoised, logits = outputs
        clean, labels = targets
        if denoised.shape != clean.shape:
            raise ValueError(f"denoised {tuple(denoised.shape)} vs clean {tuple(clean.shape)}")
        ce = self.segmentation(logits, labels)
        mse = _finite_mse(denoised, clean)
        self.last = {"ce": float(ce.detach()), "mse": float(mse.detach())}
        return ce + self.weight * mse


class Pix2PixLoss(nn.Module):
    """Adversarial (BCE with logits) + ``l1_weight`` · L1 for the Pix2Pix generator.

    The L1 term compares the generated class probabilities with the one-hot labels on
    labelled voxels. :meth:`discriminator` is the critic's loss,
    ``½ (BCE(real, 1) + BCE(fake, 0))``.

    Examples
    --------
    >>> loss = Pix2PixLoss(l1_weight=100)
    >>> fake_scores = torch.zeros(1, 1, 2, 2)                  # the critic is undecided
    >>> logits = torch.tensor([[[[9.0]], [[-9.0]]]])           # confident class 0
    >>> round(loss.generator(fake_scores, logits, torch.tensor([[[0]]])).item(), 3)  # ln 2 + ~0
    0.693
    """

    def __init__(self, l1_weight: float = 100.0, ignore_index: int = IGNORE):
        super().__init__()
        self.l1_weight = l1_weight
        self.ignore_index = ignore_index

    def generator(
        self, fake_scores: torch.Tensor, logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        adversarial = F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
        _check(logits, target)
        valid = _valid(target, self.ignore_index).unsqueeze(1)
        probs = F.softmax(logits.float(), dim=1)
        onehot = _one_hot(target, logits.shape[1], valid.squeeze(1))
        diff = (probs - onehot).abs() * valid
        l1 = diff.sum() / (valid.sum() * logits.shape[1]).clamp(min=1)
        return adversarial + self.l1_weight * l1

    def discriminator(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return 0.5 * (real + fake)

    forward = generator


_LOSSES = {
    "ce": CrossEntropyLoss,
    "cross_entropy": CrossEntropyLoss,
    "focal": FocalLoss,
    "bootstrap": BootstrappingLoss,
    "topk_ce": TopKCrossEntropy,
    "gce": GeneralizedCrossEntropy,
    "sce": SymmetricCrossEntropy,
    "dice": DiceLoss,
    "jaccard2": Jaccard2Loss,
    "denoise_segment": DenoiseSegmentLoss,
    "mse": DenoiseLoss,
    "pix2pix": Pix2PixLoss,
}


def build_loss(name: str, **options: Any) -> nn.Module:
    """A loss by name: ``ce``, ``focal``, ``bootstrap`` (Reed et al.), ``topk_ce``,
    ``gce``, ``sce``, ``dice``, ``jaccard2``,
    ``denoise_segment``, ``pix2pix``.

    Examples
    --------
    >>> build_loss("ce", label_smoothing=0.1).label_smoothing
    0.1
    """
    try:
        return _LOSSES[name](**options)
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(_LOSSES)}") from None
