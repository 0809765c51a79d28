"""The Unbiased-Teacher pieces of stage 3: an EMA teacher and its confident labels.

Self-correction (Unbiased Teacher, Liu et al. 2021, as the SR-CT pseudo-label paper
adapts it to segmentation) trains a student on strongly augmented patches against
labels that a teacher produces on weakly augmented views of the same patches:

* the teacher starts as a copy of the stage-2 network and then follows the student as
  an exponential moving average, ``θ_t ← α θ_t + (1 − α) θ_s`` (α = 0.999);
* the teacher's labels are its arg-max classes; voxels whose top-class probability is
  below ``threshold`` are masked out (labelled ``ignore_index``);
* optionally (``class_keep``, off in :func:`xctdask.self_correct`, which follows the
  paper; 0.1 in :class:`xctdask.Segmenter`) each class the teacher predicts
  keeps at least its most confident ``class_keep`` share of voxels even when they fall
  below ``threshold``: a class that the network predicts with less confidence than
  the others (pores, cracks, a thin phase) would otherwise be masked out more and
  more, and the student, taught only the confident majority around it, would shrink
  it. Measured after 400 stage-2 and 900 stage-3 steps (the set-ups of
  ``benchmarks/quality.py`` and ``end_to_end.py``): on the crystal phantom
  keeping a tenth changed nothing (0.723 against 0.724 mIoU) and keeping half cost
  10 points; on a 128×512×512 fibre-composite phantom a tenth lifted stage 3 from
  0.644 to 0.692 (24 slices scored), above stage 2's 0.680, while the full
  benchmark (all slices, stage 2 0.653) gave 0.819 plain and 0.765 with a tenth:
  single runs, whose spread is as large as the differences;
* the student's loss is label-smoothed cross entropy over the confident voxels only,
  normalised by their number (:class:`xctdask.losses.CrossEntropyLoss` with the default
  ``ignore_index`` does exactly that).

Examples
--------
>>> import torch
>>> student = torch.nn.Linear(2, 2)
>>> teacher = EMATeacher(student, decay=0.5)
>>> with torch.no_grad():
...     _ = student.weight.add_(2.0)
>>> before = teacher.module.weight.clone()
>>> teacher.update(student)
>>> torch.allclose(teacher.module.weight, 0.5 * before + 0.5 * student.weight)
True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from xctdask.backend import UNLABELLED

__all__ = ["ConfidentLabels", "EMATeacher", "class_thresholds", "confident_labels"]


@dataclass(frozen=True)
class ConfidentLabels:
    """The teacher's labels for a batch and what was masked.

    Attributes
    ----------
    labels : torch.Tensor
        Arg-max classes (long), ``ignore_index`` where the confidence is below the
        threshold.
    confidence : torch.Tensor
        Top-class probability per voxel.
    mean_confidence : float
        Mean top-class probability over all voxels.
    masked_fraction : float
        Fraction of voxels below the threshold.
    """

    labels: torch.Tensor
    confidence: torch.Tensor
    mean_confidence: float
    masked_fraction: float


def class_thresholds(
    confidence: torch.Tensor, labels: torch.Tensor, n_classes: int, threshold: float, keep: float
) -> torch.Tensor:
    """Per-class thresholds: ``min(threshold, q_c)`` where ``q_c`` is the confidence
    above which the most confident ``keep`` share of the voxels predicted as class ``c``
    lie (so at least that share of every predicted class is kept).

    Examples
    --------
    >>> conf = torch.tensor([0.95, 0.97, 0.6, 0.7, 0.8])
    >>> labels = torch.tensor([0, 0, 1, 1, 1])
    >>> class_thresholds(conf, labels, 3, 0.9, 0.5).tolist()   # class 2: none predicted
    [0.8999999761581421, 0.699999988079071, 0.8999999761581421]
    """
    out = torch.full((n_classes,), float(threshold), device=confidence.device)
    if keep <= 0:
        return out
    flat_conf, flat_labels = confidence.reshape(-1), labels.reshape(-1)
    for c in range(n_classes):
        values = flat_conf[flat_labels == c]
        if values.numel() == 0:
            continue
        # the k-th smallest with k = n - ceil(keep·n) + 1: ceil(keep·n) voxels are ≥ it
        n = values.numel()
        k = n - math.ceil(keep * n) + 1
        out[c] = torch.minimum(out[c], values.kthvalue(k).values)
    return out


def confident_labels(
    logits: torch.Tensor,
    threshold: float,
    *,
    ignore_index: int = UNLABELLED,
    class_keep: float = 0.0,
) -> ConfidentLabels:
    """Arg-max labels of ``logits`` (N, C, ...), masked where the top probability is
    below ``threshold`` (below the class's own threshold with ``class_keep > 0``, see
    :func:`class_thresholds`).

    Examples
    --------
    >>> logits = torch.tensor([[[3.0, 0.1], [0.0, 0.0]]])   # p(top) ≈ 0.95 and 0.52
    >>> out = confident_labels(logits, threshold=0.9)
    >>> out.labels.tolist(), out.masked_fraction
    ([[0, 255]], 0.5)

    A class the network is never sure of survives with ``class_keep``:

    >>> logits = torch.tensor([[[4.0, 4.0, 0.3, 0.2], [0.0, 0.0, 0.8, 0.9]]])
    >>> confident_labels(logits, 0.9).labels.tolist()
    [[0, 0, 255, 255]]
    >>> confident_labels(logits, 0.9, class_keep=0.5).labels.tolist()
    [[0, 0, 255, 1]]
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if not 0 <= class_keep <= 1:
        raise ValueError(f"class_keep must be in [0, 1], got {class_keep!r}")
    with torch.no_grad():
        probs = torch.softmax(logits.float(), dim=1)
        confidence, labels = probs.max(dim=1)
        if class_keep > 0:
            per_class = class_thresholds(confidence, labels, probs.shape[1], threshold, class_keep)
            masked = confidence < per_class[labels]
        else:
            masked = confidence < threshold
        labels = labels.masked_fill(masked, ignore_index)
    return ConfidentLabels(
        labels=labels,
        confidence=confidence,
        mean_confidence=float(confidence.mean()),
        masked_fraction=float(masked.float().mean()),
    )


class EMATeacher:
    """A frozen copy of a network that follows a student as an exponential moving average.

    Parameters
    ----------
    student : torch.nn.Module
        The network to copy (the stage-2 model); it is not modified.
    decay : float
        α in ``θ_t ← α θ_t + (1 − α) θ_s``.

    Buffers (batch-norm running statistics) follow the same average; integer buffers
    (batch counters) are copied.
    """

    def __init__(self, student: nn.Module, decay: float = 0.999):
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.decay = decay
        self.module = copy.deepcopy(student).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """One EMA step towards ``student``'s current weights."""
        a = self.decay
        for t, s in zip(self.module.parameters(), student.parameters(), strict=True):
            t.mul_(a).add_(s.detach(), alpha=1 - a)
        for t, s in zip(self.module.buffers(), student.buffers(), strict=True):
            if t.is_floating_point():
                t.mul_(a).add_(s.detach(), alpha=1 - a)
            else:
                t.copy_(s)

    @torch.no_grad()
    def label(
        self,
        x: torch.Tensor,
        threshold: float,
        *,
        ignore_index: int = UNLABELLED,
        class_keep: float = 0.0,
    ):
        """Teacher logits on ``x`` (eval mode) turned into :class:`ConfidentLabels`.

        For a network returning ``(denoised, logits)`` the logits are used.
        """
        out = self.module(x)
        logits = out[1] if isinstance(out, tuple) else out
        return confident_labels(logits, threshold, ignore_index=ignore_index, class_keep=class_keep)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.module.load_state_dict(state["module"])
