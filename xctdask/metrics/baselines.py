"""ZeroOC and Bin-ZeroOC, the Modular U-Net paper's baselines, and an intensity bound.

The Modular U-Net paper (Table D.4) compares its networks with two "theoretical
models" built from the ground truth (references, not methods):

- **ZeroOC** (zeroth-order classifier): "Classify every voxel with the majority class"
  (it "relies only on the class imbalance"). On the paper's volume it scores 81.0 / 0 /
  0 IoU (matrix / fibre / porosity), mean 27.0.
- **Bin-ZeroOC**: "Classify a voxel based only on its value. The majority class of each
  value is chosen. This is equivalent to a ZeroOC model per gray level." It is the
  paper's minimum to beat (98.4 / 94.2 / 35.9, mean 76.2): the most accurate rule that
  sees one voxel's gray value and nothing else.

This module adds one reference the paper does not define:

- :func:`intensity_iou_bound`: per class separately, the set of gray values labelled
  "this class" that maximises that class's one-vs-rest IoU. Its per-class IoU bounds
  every intensity-only classifier (KMeans, Otsu, GMM, pseudo labels) from above.

All need the joint histogram of gray value and class: one pass over the data, which
these functions compute. By default 8- and 16-bit integer volumes get one bin per gray
value (exact, as the paper's definition asks); float volumes ``bins`` equal bins
between their min and max.
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
    "intensity_iou_bound",
    "intensity_iou_bound_from_histogram",
    "joint_histogram",
    "zero_oc",
    "zero_oc_from_histogram",
]

FLOAT_BINS = 256


@dataclass(frozen=True)
class BaselineScores:
    """Per-class IoU (NaN for a class absent from the truth) and its mean."""

    iou: np.ndarray
    mean_iou: float
    decision: np.ndarray | None = None  # the class chosen per gray-level bin


def joint_histogram(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int | None = None,
    ignore_index: int | None = UNLABELLED,
) -> np.ndarray:
    """Counts ``H[c, b]`` of voxels of class ``c`` in gray-level bin ``b``; computes.

    ``bins=None``: one bin per gray value for integer volumes of 8 or 16 bits (from the
    smallest to the largest value present), 256 equal bins for float volumes. An
    integer ``bins`` uses exact values when they fit, equal bins otherwise.
    """
    check_same_shape(image, truth, ("image", "truth"))
    image, truth = unwrap(image), unwrap(truth)
    lazy = is_dask(image) or is_dask(truth)
    if lazy:
        chunks = (image if is_dask(image) else truth).chunks
        image, truth = da.asarray(image).rechunk(chunks), da.asarray(truth).rechunk(chunks)
    dtype = np.dtype(image.dtype)
    exact = False
    if dtype.kind in "iub" and dtype.itemsize <= 2:
        lo, hi = (int(v) for v in dask.compute(image.min(), image.max()))
        exact = bins is None or hi - lo + 1 <= bins
    if not exact:
        lo, hi = (float(v) for v in dask.compute(image.min(), image.max()))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("image holds NaN or inf voxels")
    n_bins = (hi - lo + 1) if exact else (bins or FLOAT_BINS)

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


def _scores(hist: np.ndarray, decision: np.ndarray) -> BaselineScores:
    """IoU per class when bin ``b`` is labelled ``decision[b]``."""
    n_classes = hist.shape[0]
    predicted = np.zeros((n_classes, n_classes), np.int64)  # [truth, predicted]
    for c in range(n_classes):
        predicted[:, c] = hist[:, decision == c].sum(axis=1)
    tp = np.diag(predicted).astype(float)
    present = predicted.sum(1) > 0
    den = predicted.sum(0) + predicted.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(present, tp / np.maximum(den, 1), np.nan)
    return BaselineScores(scores, float(np.nanmean(scores)), decision)


def zero_oc(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    ignore_index: int | None = UNLABELLED,
) -> BaselineScores:
    """ZeroOC: every voxel gets the majority class; its per-class and mean IoU.

    "Classify every voxel with the majority class" (Modular U-Net paper, Table D.4):
    the majority class scores its share of the voxels, every other class 0. The image
    is not needed (only the class counts); it is accepted for symmetry and checked.
    **Computes** the class counts (one pass over ``truth``).

    Examples
    --------
    A volume of 82.3 % matrix, 17.2 % fibre and 0.5 % pores (the paper's proportions)
    gives its Table D.4 row, 82.3 / 0 / 0:

    >>> import numpy as np
    >>> truth = np.repeat([0, 1, 2], [823, 172, 5])
    >>> scores = zero_oc(np.zeros(1000), truth, 3)
    >>> scores.iou.round(3).tolist(), round(scores.mean_iou, 3)
    ([0.823, 0.0, 0.0], 0.274)
    """
    check_same_shape(image, truth, ("image", "truth"))
    truth = unwrap(truth)
    flat = truth.ravel().astype(np.int64)
    size = max(n_classes, 0 if ignore_index is None else ignore_index + 1)
    counts = (da if is_dask(flat) else np).bincount(flat, minlength=size)
    (counts,) = dask.compute(counts)
    return zero_oc_from_histogram(np.asarray(counts)[:n_classes, None])


def zero_oc_from_histogram(hist: np.ndarray) -> BaselineScores:
    """ZeroOC scores from a ``(n_classes, n_bins)`` joint histogram (or class counts
    as a ``(n_classes, 1)`` column)."""
    counts = hist.sum(axis=1)
    decision = np.full(hist.shape[1], int(counts.argmax()))
    return _scores(counts[:, None], decision[:1])


def bin_zero_oc(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int | None = None,
    ignore_index: int | None = UNLABELLED,
) -> BaselineScores:
    """Bin-ZeroOC: each gray value gets its majority class; per-class and mean IoU.

    "Classify a voxel based only on its value. The majority class of each value is
    chosen. This is equivalent to a ZeroOC model per gray level" (Modular U-Net paper,
    Table D.4), the paper's minimum to beat. One bin per gray value for 8/16-bit
    integer volumes (see :func:`joint_histogram`). Computes the joint histogram.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([0, 0, 1, 1, 2, 2], np.uint8); lab = np.array([0, 0, 0, 1, 1, 1])
    >>> bin_zero_oc(img, lab, 2).decision
    array([0, 0, 1])
    """
    hist = joint_histogram(image, truth, n_classes, bins=bins, ignore_index=ignore_index)
    return bin_zero_oc_from_histogram(hist)


def bin_zero_oc_from_histogram(hist: np.ndarray) -> BaselineScores:
    """Bin-ZeroOC scores from a ``(n_classes, n_bins)`` joint histogram."""
    return _scores(hist, hist.argmax(axis=0))


def intensity_iou_bound(
    image: Any,
    truth: Any,
    n_classes: int,
    *,
    bins: int | None = None,
    ignore_index: int | None = UNLABELLED,
) -> BaselineScores:
    """Per class, the best one-vs-rest IoU of any set of gray values (not a paper's).

    For class ``c`` with ``a_b`` voxels of ``c`` and ``o_b`` of other classes in bin
    ``b``, choosing a set ``S`` of bins gives ``IoU = Σ_S a / (A + Σ_S o)``. The best
    set is a prefix of the bins sorted by ``a_b / o_b`` (a fractional programme), so
    the optimum is exact and cheap. No single labelling reaches every class's bound at
    once: it bounds each class's IoU of any intensity-only classifier from above.
    Computes the joint histogram (one pass).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([0, 0, 1, 1, 2, 2], np.uint8); lab = np.array([0, 0, 0, 1, 1, 1])
    >>> intensity_iou_bound(img, lab, 2).iou
    array([0.75, 0.75])
    """
    hist = joint_histogram(image, truth, n_classes, bins=bins, ignore_index=ignore_index)
    return intensity_iou_bound_from_histogram(hist)


def intensity_iou_bound_from_histogram(hist: np.ndarray) -> BaselineScores:
    """:func:`intensity_iou_bound` from a ``(n_classes, n_bins)`` joint histogram."""
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
