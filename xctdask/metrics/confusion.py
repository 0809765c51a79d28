"""The confusion (contingency) matrix: one lazy Dask reduction over all chunks."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from xctdask.backend import UNLABELLED, array_module, check_same_shape, is_dask, to_host, unwrap

__all__ = ["confusion_matrix", "contingency", "pair_counts"]


def _check_n(n: int, name: str) -> int:
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= 255:
        raise ValueError(f"{name} must be an integer in 1..255, got {n!r}")
    return int(n)


def _block_counts(
    pred: Any, truth: Any, n_truth: int, n_pred: int, ignore_index: int | None
) -> np.ndarray:
    """Counts of one chunk (NumPy or CuPy, counted where the chunk is), on the host."""
    xp = array_module(pred, truth)
    p = xp.asarray(pred).ravel()
    t = xp.asarray(truth).ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if t.size:
        if t.min() < 0 or t.max() >= n_truth:
            bad = t[(t < 0) | (t >= n_truth)][0]
            raise ValueError(
                f"truth holds label {bad}, outside 0..{n_truth - 1}"
                + (
                    f" (and not the ignore index {ignore_index})"
                    if ignore_index is not None
                    else ""
                )
            )
        if p.min() < 0 or p.max() >= n_pred:
            bad = p[(p < 0) | (p >= n_pred)][0]
            hint = (
                f" where the truth is labelled ({bad} = unlabelled: the scan's NaN voxels "
                f"are {bad} in xctdask's outputs; set the truth to {bad} there too, or "
                "leave those voxels out)"
                if ignore_index is not None and bad == ignore_index
                else ""
            )
            raise ValueError(f"prediction holds label {bad}, outside 0..{n_pred - 1}{hint}")
    flat = t.astype(xp.int64) * n_pred + p.astype(xp.int64)
    counts = xp.bincount(flat, minlength=n_truth * n_pred).reshape(n_truth, n_pred)
    return to_host(counts)


def _check_labels(array: Any, name: str) -> Any:
    array = unwrap(array)
    if not hasattr(array, "dtype"):
        array = np.asarray(array)
    if np.dtype(array.dtype).kind not in "biu":
        raise TypeError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array


def pair_counts(pred: Any, truth: Any, n_truth: int, n_pred: int, ignore_index: int | None) -> Any:
    """The unchecked counting behind :func:`contingency`: NumPy now, or lazy on Dask.

    One bincount task per chunk and a tree sum; no limit on ``n_pred`` (the
    histogram baselines count hundreds of gray-level bins with it).
    """
    if not (is_dask(pred) or is_dask(truth)):
        return _block_counts(pred, truth, n_truth, n_pred, ignore_index)
    chunks = (pred if is_dask(pred) else truth).chunks
    pred = pred if is_dask(pred) else da.from_array(pred, chunks=chunks)
    truth = truth if is_dask(truth) else da.from_array(truth, chunks=chunks)
    ndim = pred.ndim

    def block(p: np.ndarray, t: np.ndarray) -> np.ndarray:
        counts = _block_counts(p, t, n_truth, n_pred, ignore_index)
        return counts.reshape((1,) * ndim + counts.shape)

    pred, truth = da.core.unify_chunks(pred, tuple(range(ndim)), truth, tuple(range(ndim)))[1]
    per_block = da.map_blocks(
        block,
        pred,
        truth,
        dtype=np.int64,
        chunks=(*tuple((1,) * len(c) for c in pred.chunks), (n_truth,), (n_pred,)),
        new_axis=[ndim, ndim + 1],
        meta=np.empty((0,) * (ndim + 2), np.int64),
    )
    return per_block.sum(axis=tuple(range(ndim)), dtype=np.int64)


def contingency(
    pred: Any,
    truth: Any,
    n_truth: int,
    n_pred: int,
    *,
    ignore_index: int | None = UNLABELLED,
) -> Any:
    """Counts of (truth class, predicted class) pairs: a ``(n_truth, n_pred)`` matrix.

    Voxels whose truth equals ``ignore_index`` (unlabelled) are not counted. Lazy on
    Dask input: one count task per chunk and a tree sum; a label outside its range
    raises ``ValueError`` when the result is computed.
    """
    check_same_shape(pred, truth)
    pred, truth = _check_labels(pred, "prediction"), _check_labels(truth, "truth")
    n_truth, n_pred = _check_n(n_truth, "n_truth"), _check_n(n_pred, "n_pred")
    return pair_counts(pred, truth, n_truth, n_pred, ignore_index)


def confusion_matrix(
    pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED
):
    """Confusion matrix ``C[i, j]``: voxels of true class ``i`` predicted as ``j``.

    The same convention as ``sklearn.metrics.confusion_matrix(truth, pred)``. Voxels
    whose truth is ``ignore_index`` (255, unlabelled) are skipped. NumPy input gives a
    NumPy array; Dask input (or a Dask-backed DataArray) gives a lazy Dask array.

    Raises
    ------
    ValueError
        Shapes differ, ``n_classes`` is outside 1..255, or a label is out of range
        (for Dask input, when computed).

    Examples
    --------
    >>> import numpy as np
    >>> confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 255]), 2)
    array([[1, 1],
           [0, 1]])
    """
    _check_n(n_classes, "n_classes")  # in the caller's word, before contingency's
    return contingency(pred, truth, n_classes, n_classes, ignore_index=ignore_index)
