"""Matching unsupervised clusters to reference classes (Hungarian algorithm)."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from xctdask.backend import UNLABELLED, is_dask, unwrap
from xctdask.metrics.confusion import contingency

__all__ = ["apply_mapping", "match_labels"]


def match_labels(
    pred: Any,
    truth: Any,
    n_pred: int,
    n_truth: int,
    *,
    ignore_index: int | None = UNLABELLED,
) -> np.ndarray:
    """Map each predicted cluster to a reference class, maximising the overlap.

    The Hungarian algorithm pairs clusters and classes one to one so that the total
    number of voxels that agree is largest. With more clusters than classes
    (over-clustering), every cluster left unpaired goes to the class it overlaps most.
    This computes the contingency matrix (one pass over the data).

    Returns
    -------
    numpy.ndarray
        ``mapping[k]`` is the reference class of cluster ``k`` (length ``n_pred``).
        Apply it lazily with :func:`apply_mapping`.

    Examples
    --------
    >>> import numpy as np
    >>> pred = np.array([2, 2, 0, 0, 1, 1, 3])
    >>> truth = np.array([0, 0, 1, 1, 2, 2, 2])
    >>> match_labels(pred, truth, n_pred=4, n_truth=3)
    array([1, 2, 0, 2], dtype=uint8)
    """
    (table,) = dask.compute(contingency(pred, truth, n_truth, n_pred, ignore_index=ignore_index))
    rows, cols = linear_sum_assignment(table, maximize=True)  # rows: truth, cols: clusters
    mapping = table.argmax(axis=0).astype(np.uint8)
    mapping[cols] = rows
    return mapping


def apply_mapping(
    labels: Any, mapping: np.ndarray, *, ignore_index: int | None = UNLABELLED
) -> Any:
    """Relabel with a lookup table; ``ignore_index`` voxels stay as they are. Lazy.

    Examples
    --------
    >>> import numpy as np
    >>> apply_mapping(np.array([0, 1, 255]), np.array([1, 0], np.uint8))
    array([  1,   0, 255], dtype=uint8)
    """
    mapping = np.asarray(mapping, np.uint8)
    table = np.arange(256, dtype=np.uint8)
    table[: mapping.size] = mapping
    if ignore_index is not None and 0 <= ignore_index < 256:
        table[ignore_index] = ignore_index
    data = unwrap(labels)
    out = da.map_blocks(np.take, table, data, dtype=np.uint8) if is_dask(data) else table[data]
    if isinstance(labels, xr.DataArray):
        return labels.copy(data=out)
    return out
