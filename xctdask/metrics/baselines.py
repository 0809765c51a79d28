"""ZeroOC and Bin-ZeroOC: the best any intensity-only classifier can do.

Both come from the Modular U-Net paper, which compares networks with classifiers
that look at one voxel's gray value and nothing else (no context), built with the
ground truth (so they are references, not methods):

- **ZeroOC** (zero-order classifier): for every gray value, predict the class most
  frequent among voxels with that value in the ground truth. It is the most accurate
  intensity-only rule (Bayes-optimal for pixel accuracy).
- **Bin-ZeroOC**: for every class separately, a binary (one-vs-rest) intensity-only
  rule: the set of gray values labelled "this class" that maximises that class's IoU.
  Its per-class IoU is a ceiling for any intensity-only classifier, so its mean is
  the ceiling for any intensity clustering (KMeans, Otsu, GMM, pseudo labels).

Both need the joint histogram of gray value and class: one pass over the data, which
these functions compute. Float volumes are binned into ``bins`` equal bins between
their min and max; integer volumes with at most ``bins`` distinct values use exact
values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from xctdask.backend import UNLABELLED, check_same_shape, is_dask, unwrap
from xctdask.metrics.confusion import pair_counts

__all__ = [
    "BaselineScores",
    "bin_zero_oc",
    "bin_zero_oc_from_histogram",
    "joint_histogram",
    "zero_oc",
    "zero_oc_from_histogram",
]


@dataclass(frozen=True)
class BaselineScores:
    """Per-class IoU and its mean for a baseline classifier."""

    iou: np.ndarray
    mean_iou: float
    decision: np.ndarray | None = None  # ZeroOC: class per gray-level bin


def joint_histogram(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int = 256,
    ignore_index: int | None = UNLABELLED,
) -> np.ndarray:
    """Counts ``H[c, b]`` of voxels of class ``c`` in gray-level bin ``b``; computes."""
    check_same_shape(image, truth, ("image", "truth"))
    image, truth = unwrap(image), unwrap(truth)
    lazy = is_dask(image) or is_dask(truth)
    if lazy:
        chunks = (image if is_dask(image) else truth).chunks
        image, truth = da.asarray(image).rechunk(chunks), da.asarray(truth).rechunk(chunks)
    dtype = np.dtype(image.dtype)
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        lo, hi = dask.compute(image.min(), image.max()) if hi - lo + 1 > bins else (lo, hi)
        lo, hi = int(lo), int(hi)
        exact = hi - lo + 1 <= bins
    else:
        exact = False
    if not exact:
        lo, hi = (float(v) for v in dask.compute(image.min(), image.max()))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("image holds NaN or inf voxels")
    n_bins = (hi - lo + 1) if exact else bins

    def to_bins(img: np.ndarray) -> np.ndarray:
        if exact:
            return img.astype(np.int64) - lo
        scale = n_bins / (hi - lo) if hi > lo else 0.0
        return np.clip(((img - lo) * scale).astype(np.int64), 0, n_bins - 1)

    if lazy:
        binned = image.map_blocks(to_bins, dtype=np.int64)
    else:
        binned = to_bins(np.asarray(image))
    (hist,) = dask.compute(pair_counts(binned, truth, n_classes, n_bins, ignore_index))
    return hist


def zero_oc(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int = 256,
    ignore_index: int | None = UNLABELLED,
) -> BaselineScores:
    """ZeroOC: the majority class of each gray level; its per-class and mean IoU.

    Computes the joint histogram (one pass over the data).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([0, 0, 1, 1, 2, 2]); lab = np.array([0, 0, 0, 1, 1, 1])
    >>> zero_oc(img, lab, 2, bins=3).decision
    array([0, 0, 1])
    """
    hist = joint_histogram(image, truth, n_classes, bins=bins, ignore_index=ignore_index)
    return zero_oc_from_histogram(hist)


def zero_oc_from_histogram(hist: np.ndarray) -> BaselineScores:
    """ZeroOC scores from a ``(n_classes, n_bins)`` joint histogram."""
    n_classes = hist.shape[0]
    decision = hist.argmax(axis=0)
    predicted = np.zeros((n_classes, n_classes), np.int64)  # [truth, predicted]
    for c in range(n_classes):
        predicted[:, c] = hist[:, decision == c].sum(axis=1)
    tp = np.diag(predicted).astype(float)
    den = predicted.sum(0) + predicted.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(den > 0, tp / den, np.nan)
    return BaselineScores(scores, float(np.nanmean(scores)), decision)


def bin_zero_oc(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int = 256,
    ignore_index: int | None = UNLABELLED,
) -> BaselineScores:
    """Bin-ZeroOC: per class, the gray-level set with the best one-vs-rest IoU.

    For class ``c`` with ``a_b`` voxels of ``c`` and ``o_b`` of other classes in bin
    ``b``, choosing a set ``S`` of bins gives ``IoU = Σ_S a / (A + Σ_S o)``. The best
    set is a prefix of the bins sorted by ``a_b / o_b`` (a fractional programme), so
    the optimum is exact and cheap. Computes the joint histogram (one pass).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([0, 0, 1, 1, 2, 2]); lab = np.array([0, 0, 0, 1, 1, 1])
    >>> bin_zero_oc(img, lab, 2, bins=3).iou
    array([0.75, 0.75])
    """
    hist = joint_histogram(image, truth, n_classes, bins=bins, ignore_index=ignore_index)
    return bin_zero_oc_from_histogram(hist)


def bin_zero_oc_from_histogram(hist: np.ndarray) -> BaselineScores:
    """Bin-ZeroOC scores from a ``(n_classes, n_bins)`` joint histogram."""
    hist = hist.astype(float)
    n_classes = hist.shape[0]
    scores = np.full(n_classes, np.nan)
    total = hist.sum(axis=0)
    for c in range(n_classes):
        a = hist[c]
        o = total - a
        if a.sum() == 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(o > 0, a / o, np.inf)
        order = np.argsort(-ratio, kind="stable")
        order = order[a[order] > 0]
        iou = np.cumsum(a[order]) / (a.sum() + np.cumsum(o[order]))
        scores[c] = iou.max()
    return BaselineScores(scores, float(np.nanmean(scores)))
