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

    def finalize(self, mean: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """The result from the averaged values ``(C, *block)``; ``bad`` marks voxels
        whose input is not finite."""
        out = mean.clone()
        out[:, bad] = math.nan
        return out


def _first_max(mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max and max over the leading class dim, one class at a time (an arg-max
    along the outermost dim is a strided reduction, ~10× slower on a CPU). Ties go to
    the first class, as ``argmax`` does."""
    import torch

    best = mean[0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=mean.device)
    for c in range(1, mean.shape[0]):
        better = mean[c] > best
        index[better] = c
        torch.maximum(best, mean[c], out=best)
    return index, best


class Labels(Merger):
    name = "labels"
    dtype = np.dtype(np.uint8)

    def finalize(self, mean, bad):
        labels, _ = _first_max(mean)
        labels[bad] = UNLABELLED
        return labels


class Probabilities(Merger):
    name = "probabilities"
    per_class = True


class Confidence(Merger):
    name = "confidence"

    def finalize(self, mean, bad):
        _, out = _first_max(mean)
        out[bad] = math.nan
        return out


class Entropy(Merger):
    """Normalised entropy of the averaged class probabilities: an uncertainty map."""

    name = "entropy"

    def finalize(self, mean, bad):
        p = mean.clamp_min(1e-12)
        out = -(p * p.log()).sum(dim=0) / math.log(max(mean.shape[0], 2))
        out = out.clamp(0, 1)
        out[bad] = math.nan
        return out


class Denoised(Merger):
    name = "denoised"
    source = "denoised"
    softmax = False

    def finalize(self, mean, bad):
        out = mean[0].clone()
        out[bad] = math.nan
        return out


class Logits(Merger):
    name = "logits"
    softmax = False
    per_class = True


MERGERS: dict[str, Merger] = {
    m.name: m() for m in (Labels, Probabilities, Confidence, Entropy, Denoised, Logits)
}
#: The outputs ``predict`` accepts.
OUTPUTS = tuple(MERGERS)
