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


_SLAB = 1 << 16  # voxels per comparison step: temporaries stay in cache


def _compare_cpu(x: np.ndarray, base: int, compare: list) -> np.ndarray:
    """``base`` plus the step of every breakpoint below each voxel, slab by slab.

    Uint8 arithmetic wraps, so a negative label step (a class owning two intervals)
    is a step of ``256 - |step|``.
    """
    out = np.empty(x.shape, np.uint8)
    flat_x, flat_out = np.ascontiguousarray(x).reshape(-1), out.reshape(-1)
    above = np.empty(min(_SLAB, flat_x.size), bool)
    scaled = np.empty(above.size, np.uint8)
    for start in range(0, flat_x.size, _SLAB):
        xs, os = flat_x[start : start + _SLAB], flat_out[start : start + _SLAB]
        a, s = above[: xs.size], scaled[: xs.size]
        os.fill(base)
        for rounded, step in compare:
            np.greater(xs, rounded, out=a)
            if step == 1:
                np.add(os, a, out=os)
            else:
                np.multiply(a, step, out=s)
                np.add(os, s, out=os)
    return out


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
        lo, hi = x.min(), x.max()
        finite = bool(xp.isfinite(lo) & xp.isfinite(hi))
        # a breakpoint below the chunk's minimum adds its step everywhere, one at or
        # above its maximum nowhere: only the ones in between need a comparison
        base, compare = int(rule.labels[0]), []
        steps = (np.diff(rule.labels.astype(np.int64)) % 256).astype(np.uint8)
        low, high = _range(dtype)
        if finite:
            low, high = max(low, float(lo)), min(high, float(hi))
        for t, rounded, step in zip(
            rule.breakpoints, rule.thresholds_for(dtype), steps, strict=True
        ):
            if step == 0 or t >= high:
                continue
            if t < low:
                base = (base + int(step)) % 256
            else:
                compare.append((rounded, np.uint8(step)))
        if xp is np:
            out = _compare_cpu(x, base, compare)
        else:
            out = xp.full(x.shape, base, np.uint8)
            for rounded, step in compare:
                above = x > rounded
                out += above if step == 1 else above.view(np.uint8) * step
        if dtype.kind == "f" and not finite:
            out[~xp.isfinite(x)] = rule.fill_value
    if mask is not None:
        out = xp.where(mask, out, xp.uint8(rule.fill_value))
    return out
