"""The relabel pass: intensity intervals to class labels, one cheap task per chunk.

A fitted intensity model is a sorted list of breakpoints and a class per interval
(a value equal to a breakpoint belongs to the interval below it). For 8- and 16-bit
integer volumes that becomes a lookup table over every gray value; otherwise each
chunk is compared with the breakpoints, rounded to the chunk's dtype so that the
comparison in that dtype gives exactly the answer the float64 breakpoints would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IntervalRule", "has_lookup_table", "relabel_block"]


def has_lookup_table(dtype: np.dtype) -> bool:
    """True for bool and 8/16-bit integers: relabelled through a table of every value."""
    dtype = np.dtype(dtype)
    return dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2)


class IntervalRule:
    """Breakpoints and the class of each interval they delimit.

    Examples
    --------
    >>> rule = IntervalRule([1.5, 4.0], [0, 1, 2])
    >>> rule.apply(np.array([1.0, 1.5, 2.0, 4.0, 4.5, np.nan])).tolist()
    [0, 0, 1, 1, 2, 255]
    """

    def __init__(self, breakpoints: Any, labels: Any, fill_value: int = 255):
        self.breakpoints = np.asarray(breakpoints, np.float64).ravel()
        self.labels = np.asarray(labels, np.uint8).ravel()
        if self.labels.size != self.breakpoints.size + 1:
            raise ValueError("need one label per interval: len(labels) == len(breakpoints) + 1")
        if np.any(np.diff(self.breakpoints) <= 0):
            raise ValueError("breakpoints must increase strictly")
        self.fill_value = int(fill_value)
        self.identity = bool(np.array_equal(self.labels, np.arange(self.labels.size)))

    def thresholds_for(self, dtype: np.dtype) -> np.ndarray:
        """Breakpoints in ``dtype`` such that ``x > t_dtype`` ⇔ ``x > t`` for x of that dtype."""
        dtype = np.dtype(dtype)
        t = self.breakpoints
        if dtype.kind == "f":
            info = np.finfo(dtype)
            rounded = np.clip(t, info.min, info.max).astype(dtype)
            too_big = rounded.astype(np.float64) > t
            rounded[too_big] = np.nextafter(rounded[too_big], dtype.type(-np.inf))
            return rounded
        info = np.iinfo(dtype)
        return np.clip(np.floor(t), info.min, info.max).astype(dtype)

    def lookup_table(self, dtype: np.dtype) -> np.ndarray:
        """Label of every value of an 8/16-bit integer (or bool) dtype, indexed by its
        unsigned bit pattern."""
        dtype = np.dtype(np.uint8 if np.dtype(dtype).kind == "b" else dtype)
        bits = dtype.itemsize * 8
        unsigned = np.arange(2**bits, dtype=np.uint64).astype(np.dtype(f"u{dtype.itemsize}"))
        values = unsigned.view(dtype).astype(np.float64)
        return self.labels[np.searchsorted(self.breakpoints, values, side="left")]

    def apply(self, x: Any, mask: Any = None) -> Any:
        """Labels (uint8) for an array of any real dtype, NumPy or CuPy."""
        return relabel_block(x, mask, self)


def _range(dtype: np.dtype) -> tuple[float, float]:
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    low = -np.inf if dtype.kind == "f" else float(info.min)
    return low, float(info.max) if dtype.kind != "f" else np.inf


def relabel_block(x: Any, mask: Any, rule: IntervalRule, lut: Any = None) -> Any:
    """Label one chunk; non-finite voxels and voxels where ``mask`` is False get the
    rule's ``fill_value``."""
    from xctdask.backend import array_module

    xp = array_module(x)
    dtype = np.dtype(x.dtype)
    if has_lookup_table(dtype):
        if lut is None:
            lut = rule.lookup_table(dtype)
        lut = xp.asarray(lut)
        unsigned = np.dtype(f"u{dtype.itemsize}")
        out = lut[x.view(unsigned)]
    else:
        out = xp.zeros(x.shape, np.uint8)
        low, high = _range(dtype)
        for t, rounded in zip(rule.breakpoints, rule.thresholds_for(dtype), strict=True):
            if t < low:  # every value of this dtype lies above it
                out += np.uint8(1)
            elif t < high:
                out += x > rounded
        if not rule.identity:
            out = xp.asarray(rule.labels)[out]
        if dtype.kind == "f" and not bool(xp.isfinite(x.min()) & xp.isfinite(x.max())):
            out[~xp.isfinite(x)] = rule.fill_value
    if mask is not None:
        out = xp.where(mask, out, xp.uint8(rule.fill_value))
    return out
