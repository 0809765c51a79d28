"""What ``predict`` can return: one merger per output.

A merger says which network output it averages over the tile lattice (``source``),
how each tile's raw output is turned into what is averaged (softmax, or nothing), and
how the averaged values become the result (``finalize``). Adding an output of
``predict`` is one class here and one line in :data:`MERGERS`.

=============== =========== =========== ================================================
output          source      averaged    result
=============== =========== =========== ================================================
labels          logits      softmax     uint8 arg-max class; 255 where the input is not
                                        finite
probabilities   logits      softmax     float32 with a leading ``class`` dim
confidence      logits      softmax     float32, the top class's probability
entropy         logits      softmax     float32, ``-Σ p log p / log C`` in [0, 1]: 0 is
                                        certain, 1 is a uniform guess
denoised        denoised    identity    float32, in the input's grey values
logits          logits      identity    float32 with a ``class`` dim (what MONAI's
                                        ``sliding_window_inference`` returns)
=============== =========== =========== ================================================

Examples
--------
>>> import torch
>>> p = torch.tensor([[[0.5]], [[0.5]]])          # two classes, one voxel
>>> float(MERGERS["entropy"].finalize(p, torch.zeros(1, 1, dtype=torch.bool)))
1.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from xctdask.backend import UNLABELLED

if TYPE_CHECKING:  # torch is imported by the runner; the names here stay light
    import torch

__all__ = ["MERGERS", "OUTPUTS", "Merger"]


class Merger:
    """Base class: how one output of ``predict`` is averaged and finalised."""

    name: ClassVar[str]
    source: ClassVar[str] = "logits"  # the network output that is averaged
    softmax: ClassVar[bool] = True  # tiles are averaged as probabilities
    per_class: ClassVar[bool] = False  # the result keeps a leading class dim
    dtype: ClassVar[np.dtype] = np.dtype(np.float32)

    def prepare(self, tile: torch.Tensor) -> torch.Tensor:
        """A tile's raw output (N, C, ...) as the quantity that is averaged."""
        tile = tile.float()
        return tile.softmax(dim=1) if self.softmax else tile

    #: whether the result depends on the averaged values only up to a positive factor
    #: per voxel, so the runner may skip dividing the weighted sums by the weight sum
    scale_free: ClassVar[bool] = False

    def finalize(self, mean: torch.Tensor, bad: torch.Tensor | None) -> torch.Tensor:
        """The result from the averaged values ``(C, *block)``; ``bad`` marks voxels
        whose input is not finite (``None``: there are none)."""
        return _mark(mean.clone(), bad, math.nan)  # ``bad`` broadcasts over classes


def _first_max(mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max and max over the leading class dim, one class at a time (an arg-max
    along the outermost dim is a strided reduction, ~10× slower on a CPU). Ties go to
    the first class, as ``argmax`` does.

    The index is updated arithmetically (``index += better · (c - index)``, exact in
    uint8 because ``index < c``): a boolean-mask assignment costs ~7 ms per million
    voxels on a CPU, the three uint8 operations ~0.5 ms.
    """
    import torch

    best = mean[0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=mean.device)
    for c in range(1, mean.shape[0]):
        better = torch.gt(mean[c], best).view(torch.uint8)
        index.add_(better.mul_(c - index))
        torch.maximum(best, mean[c], out=best)
    return index, best


def _mark(out: torch.Tensor, bad: torch.Tensor | None, value: float) -> torch.Tensor:
    """``out`` with ``value`` where ``bad`` (in place; nothing to do for ``None``)."""
    if bad is not None:
        out.masked_fill_(bad, value)
    return out


class Labels(Merger):
    name = "labels"
    dtype = np.dtype(np.uint8)

    scale_free = True  # the arg-max of the weighted sums is that of their mean

    def finalize(self, mean, bad):
        labels, _ = _first_max(mean)
        return _mark(labels, bad, UNLABELLED)


class Probabilities(Merger):
    name = "probabilities"
    per_class = True


class Confidence(Merger):
    name = "confidence"

    def finalize(self, mean, bad):
        _, out = _first_max(mean)
        return _mark(out, bad, math.nan)


class Entropy(Merger):
    """Normalised entropy of the averaged class probabilities: an uncertainty map."""

    name = "entropy"

    def finalize(self, mean, bad):
        p = mean.clamp_min(1e-12)
        out = -(p * p.log()).sum(dim=0) / math.log(max(mean.shape[0], 2))
        return _mark(out.clamp(0, 1), bad, math.nan)


class Denoised(Merger):
    name = "denoised"
    source = "denoised"
    softmax = False

    def finalize(self, mean, bad):
        return _mark(mean[0].clone(), bad, math.nan)


class Logits(Merger):
    name = "logits"
    softmax = False
    per_class = True


MERGERS: dict[str, Merger] = {
    m.name: m() for m in (Labels, Probabilities, Confidence, Entropy, Denoised, Logits)
}
#: The outputs ``predict`` accepts.
OUTPUTS = tuple(MERGERS)
