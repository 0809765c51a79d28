"""The histogram pass: one Dask reduction over all chunks, independent of the chunking.

Bins lie on a lattice of width ``2**e`` anchored at zero: voxel ``v`` falls in bin
``floor(v / 2**e)``. Dividing by a power of two is exact in floating point, so a bin
index never depends on which task computed it, and a histogram on a fine lattice can be
coarsened *exactly* to any coarser one by an integer shift. Each chunk picks the finest
lattice its own value range allows; partial histograms are merged on the coarser of the
two lattices, and the root ends on the lattice the global value range gives. The result
is the same for every chunking, it costs one read of the volume, and no range has to be
known in advance.

* Integer volumes of 8 or 16 bits get one bin per gray value (``e = 0``), exactly.
* Float volumes get between ``bins`` and ``2·bins`` bins over their finite range. If a
  few extreme outliers stretch that range so far that the bulk of the voxels share
  fewer than ``bins / 8`` bins, a second pass histograms the robust range
  (0.01 %–99.99 % quantiles; values beyond it are clipped into the end bins) and a
  warning says so.

NaN and ±inf voxels are excluded and counted; voxels outside the mask are excluded and
counted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from xctdask._progress import compute
from xctdask.backend import is_dask, native_order, to_host, unwrap

__all__ = ["Histogram", "intensity_histogram"]

_INT64_BITS = 62  # headroom: lattice indices stay below 2**62 in magnitude
# finest lattice per dtype: integers never split a gray value; 2**-e must stay
# representable in the float type the chunk is scaled in
_E_MIN = {"b": 0, "i": 0, "u": 0, 2: -126, 4: -126, 8: -1000}


@dataclass(frozen=True)
class Histogram:
    """Voxel counts on a regular grid of bins, with what was left out.

    Attributes
    ----------
    counts : numpy.ndarray of int64
        Voxels per bin.
    edges : numpy.ndarray of float64
        ``len(counts) + 1`` increasing bin edges.
    exact : bool
        True when every bin holds a single integer gray value.
    n_nonfinite : int
        NaN and ±inf voxels (never counted in a bin).
    n_excluded : int
        Finite voxels outside the mask.
    n_clipped : int
        Finite voxels outside ``edges`` counted in the first or last bin (only after a
        robust-range pass).
    vmin, vmax : float
        Smallest and largest finite voxel counted (before any clipping).
    """

    counts: np.ndarray
    edges: np.ndarray
    exact: bool
    n_nonfinite: int = 0
    n_excluded: int = 0
    n_clipped: int = 0
    vmin: float = math.nan
    vmax: float = math.nan

    @property
    def centers(self) -> np.ndarray:
        """Bin centres (the gray values themselves for an exact histogram)."""
        return (self.edges[1:] + self.edges[:-1]) / 2

    @property
    def bin_width(self) -> float:
        return float(self.edges[1] - self.edges[0])

    @property
    def total(self) -> int:
        """Voxels counted in bins."""
        return int(self.counts.sum())

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Quantiles from the histogram (linear within a bin)."""
        cdf = np.concatenate([[0], np.cumsum(self.counts)]) / max(self.total, 1)
        return np.interp(q, cdf, self.edges)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for JSON."""
        return {
            "counts": self.counts.tolist(),
            "edges": self.edges.tolist(),
            "exact": self.exact,
            "n_nonfinite": self.n_nonfinite,
            "n_excluded": self.n_excluded,
            "n_clipped": self.n_clipped,
            "vmin": self.vmin,
            "vmax": self.vmax,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        return cls(
            np.asarray(d["counts"], np.int64),
            np.asarray(d["edges"], np.float64),
            bool(d["exact"]),
            int(d["n_nonfinite"]),
            int(d["n_excluded"]),
            int(d["n_clipped"]),
            float(d["vmin"]),
            float(d["vmax"]),
        )


@dataclass
class _Part:
    """A partial histogram on the lattice of width ``2**e``; bins start at ``offset``."""

    e: int
    offset: int
    counts: np.ndarray
    n_nonfinite: int
    n_excluded: int
    n_clipped: int
    vmin: float
    vmax: float


def _empty_part(e_min: int, n_nonfinite, n_excluded, n_clipped, vmin, vmax) -> _Part:
    return _Part(e_min, 0, np.zeros(0, np.int64), n_nonfinite, n_excluded, n_clipped, vmin, vmax)


def _exponent(span: float, bins: int, e_min: int, magnitude: float) -> int:
    """Finest lattice exponent giving at most ``2·bins`` bins over ``span``."""
    floor_e = e_min
    if magnitude > 0 and math.isfinite(magnitude):
        floor_e = max(e_min, math.floor(math.log2(magnitude)) - _INT64_BITS + 2)
    if span <= 0:
        return floor_e
    return max(floor_e, math.floor(math.log2(span / bins)))


_SLAB = 1 << 18  # voxels per CPU counting step: buffers stay in cache


def _count_cpu(values: np.ndarray, e: int, offset: int, n_bins: int, clip) -> np.ndarray:
    """Counts of ``floor(v / 2**e) - offset`` for a flat NumPy array, slab by slab.

    PyTorch's ``bincount`` on int32 is several times faster than NumPy's, and
    working through cache-sized slabs with preallocated buffers avoids touching a
    block-sized temporary per step.
    """
    import torch

    counts = torch.zeros(n_bins, dtype=torch.int64)
    kind = values.dtype.kind
    work = torch.float64 if values.dtype.itemsize == 8 and kind == "f" else torch.float32
    if kind in "biu":
        work = torch.int64
    step = min(_SLAB, values.size)
    buf = torch.empty(step, dtype=work)
    index = torch.empty(step, dtype=torch.int32)
    for start in range(0, values.size, step):
        part = values[start : start + step]
        n = part.size
        b, i = buf[:n], index[:n]
        if part.dtype.kind in "iu" and part.dtype.itemsize >= 4 and part.dtype != np.int64:
            part = part.astype(np.int64)
        elif part.dtype == np.float16:
            part = part.astype(np.float32)
        src = torch.from_numpy(np.ascontiguousarray(native_order(part)))
        if kind == "f":
            if src.dtype != work:
                b.copy_(src)
                src = b
            if clip is not None:
                torch.clamp(src, clip[0], clip[1], out=b)
                src = b
            torch.mul(src, 2.0**-e, out=b)  # exact: a power of two
            b.floor_().sub_(float(offset))
        else:
            b.copy_(src)
            if e > 0:
                b.bitwise_right_shift_(e)
            b.sub_(offset)
        i.copy_(b)
        counts += torch.bincount(i, minlength=n_bins)
    return counts.numpy()


def _count_gpu(values: Any, e: int, offset: int, n_bins: int, clip, xp: Any) -> np.ndarray:
    if values.dtype.kind == "f":
        v = values.astype(xp.float32) if values.dtype.itemsize < 4 else values
        if clip is not None:
            v = xp.clip(v, clip[0], clip[1])
        index = xp.floor(v * v.dtype.type(2.0**-e)) - offset
    else:
        index = values.astype(xp.int64)
        index = (index >> e if e > 0 else index) - offset
    return to_host(xp.bincount(index.astype(xp.int32), minlength=n_bins)).astype(np.int64)


def _lattice_offset(value: float, e: int, kind: str) -> int:
    if kind == "f":
        return math.floor(value * 2.0**-e)
    return int(value) >> e if e > 0 else int(value)


def _block_part(
    x: Any,
    mask: Any,
    bins: int,
    e_min: int,
    clip: tuple[float, float, int] | None,
) -> _Part:
    """Histogram one chunk: finite voxels inside the mask, on its finest lattice."""
    from xctdask.backend import array_module

    xp = array_module(x)
    size = int(x.size)
    if x.dtype == bool:
        x = x.view(xp.uint8)
    n_nonfinite = 0
    keep = None if mask is None else xp.asarray(mask, dtype=bool)
    vmin = vmax = None
    if x.dtype.kind == "f":
        lo, hi = x.min(), x.max()
        if not bool(xp.isfinite(lo) & xp.isfinite(hi)):
            finite = xp.isfinite(x)
            n_nonfinite = size - int(finite.sum())
            keep = finite if keep is None else finite & keep
        elif keep is None:
            vmin, vmax = float(lo), float(hi)
    values = x.ravel() if keep is None else x[keep]
    n_excluded = size - n_nonfinite - int(values.size)
    if values.size == 0:
        return _empty_part(e_min, n_nonfinite, n_excluded, 0, math.inf, -math.inf)
    if vmin is None:
        vmin, vmax = float(values.min()), float(values.max())
    n_clipped = 0
    if clip is not None:
        lo, hi, e = clip
        if x.dtype.kind == "f":  # the bounds exactly as the chunk's dtype holds them
            lo, hi = float(x.dtype.type(lo)), float(x.dtype.type(hi))
            clip = (lo, hi, e)
        n_clipped = int(((values < lo) | (values > hi)).sum())
        first, last = max(vmin, lo), min(vmax, hi)
    else:
        e = _exponent(vmax - vmin, bins, e_min, max(abs(vmin), abs(vmax)))
        first, last = vmin, vmax
    kind = "f" if x.dtype.kind == "f" else "i"
    offset = _lattice_offset(first, e, kind)
    n_bins = _lattice_offset(last, e, kind) - offset + 1
    if xp is np:
        counts = _count_cpu(values, e, offset, n_bins, clip)
    else:
        counts = _count_gpu(values, e, offset, n_bins, clip, xp)
    return _Part(e, offset, counts, n_nonfinite, n_excluded, n_clipped, vmin, vmax)


def _coarsen(part: _Part, e: int) -> tuple[int, np.ndarray]:
    """Offset and counts of ``part`` on the lattice ``2**e`` (exact, integer shift)."""
    shift = e - part.e
    if shift == 0 or part.counts.size == 0:
        return part.offset >> max(shift, 0), part.counts
    index = (part.offset + np.arange(part.counts.size, dtype=np.int64)) >> min(shift, 63)
    starts = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    return int(index[0]), np.add.reduceat(part.counts, starts)


def _merge(parts: list[_Part], bins: int, e_min: int, fixed_e: bool) -> _Part:
    """Sum partial histograms on the coarsest lattice any of them (or their union) needs."""
    parts = [p for p in parts if p is not None]
    full = [p for p in parts if p.counts.size]
    vmin = min((p.vmin for p in parts), default=math.inf)
    vmax = max((p.vmax for p in parts), default=-math.inf)
    n_nonfinite = sum(p.n_nonfinite for p in parts)
    n_excluded = sum(p.n_excluded for p in parts)
    n_clipped = sum(p.n_clipped for p in parts)
    if not full:
        return _empty_part(e_min, n_nonfinite, n_excluded, n_clipped, vmin, vmax)
    e = max(p.e for p in full)
    if not fixed_e:
        e = max(e, _exponent(vmax - vmin, bins, e_min, max(abs(vmin), abs(vmax))))
    pieces = [_coarsen(p, e) for p in full]
    offset = min(o for o, _ in pieces)
    end = max(o + c.size for o, c in pieces)
    counts = np.zeros(end - offset, np.int64)
    for o, c in pieces:
        counts[o - offset : o - offset + c.size] += c
    return _Part(e, offset, counts, n_nonfinite, n_excluded, n_clipped, vmin, vmax)


def _part_in_cell(x: Any, mask: Any = None, *, bins: int, e_min: int, clip) -> np.ndarray:
    """The chunk's partial histogram in a 1×1×1 object array (a blockwise task)."""
    cell = np.empty((1,) * x.ndim, dtype=object)
    cell[(0,) * x.ndim] = _block_part(x, mask, bins, e_min, clip)
    return cell


def _merge_cells(
    cells: np.ndarray, axis: Any = None, keepdims: bool = True, *, bins, e_min, fixed
) -> np.ndarray:
    """Merge the parts of a block of cells into one (a reduction's combine step)."""
    parts = [c for c in np.asarray(cells, dtype=object).ravel() if c is not None]
    merged = _merge(parts, bins, e_min, fixed)
    out = np.empty((1,) * np.ndim(cells) if keepdims else (), dtype=object)
    out[...] = merged
    return out


def _lazy_parts(vol: Any, mask: Any, bins: int, e_min: int, clip) -> Any:
    """Per-chunk partial histograms (blockwise, so Dask fuses each with its chunk's
    read and the chunk never leaves the task), merged by a tree reduction: two compact
    layers whatever the number of chunks."""
    import dask.array as da

    fixed = clip is not None
    args = (vol,) if mask is None else (vol, da.asarray(mask).rechunk(vol.chunks))
    cells = da.map_blocks(
        _part_in_cell,
        *args,
        bins=bins,
        e_min=e_min,
        clip=clip,
        chunks=tuple((1,) * len(c) for c in vol.chunks),
        dtype=object,
        meta=np.empty((0,) * vol.ndim, dtype=object),
    )

    def combine(x, axis=None, keepdims=True):
        return _merge_cells(x, axis, keepdims, bins=bins, e_min=e_min, fixed=fixed)

    def aggregate(x, axis=None, keepdims=False):
        return _merge_cells(x, axis, keepdims, bins=bins, e_min=e_min, fixed=fixed)

    return da.reduction(
        cells,
        chunk=lambda x, axis=None, keepdims=True: x,
        combine=combine,
        aggregate=aggregate,
        axis=tuple(range(vol.ndim)),
        dtype=object,
        split_every=16,
        meta=np.empty((), dtype=object),
    )


def _finish(part: _Part, exact: bool) -> Histogram:
    width = 2.0**part.e
    edges = (part.offset + np.arange(part.counts.size + 1, dtype=np.float64)) * width
    if exact:
        edges = edges - 0.5
    # trim empty bins at both ends
    nz = np.flatnonzero(part.counts)
    if nz.size:
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        counts, edges = part.counts[lo:hi], edges[lo : hi + 1]
    else:
        counts = part.counts
    return Histogram(
        counts=counts,
        edges=edges,
        exact=exact,
        n_nonfinite=part.n_nonfinite,
        n_excluded=part.n_excluded,
        n_clipped=part.n_clipped,
        vmin=part.vmin,
        vmax=part.vmax,
    )


def _run(vol, mask, bins, e_min, clip, progress, description) -> _Part:
    if is_dask(vol):
        (cell,) = compute(
            _lazy_parts(vol, mask, bins, e_min, clip), progress=progress, description=description
        )
        return np.asarray(cell, dtype=object).ravel()[0]
    return _merge([_block_part(vol, mask, bins, e_min, clip)], bins, e_min, clip is not None)


def intensity_histogram(
    vol: Any,
    *,
    bins: int | None = None,
    mask: Any = None,
    progress: bool = False,
) -> Histogram:
    """Histogram every finite voxel of ``vol`` (inside ``mask``): **computes** now.

    This is the one place stage 1 reads the whole volume to fit; it is a single Dask
    reduction (one task per chunk plus a small merge tree) on the active scheduler.

    Parameters
    ----------
    vol : array-like
        NumPy, CuPy, Dask array or DataArray of any real dtype. CuPy chunks are
        histogrammed on their GPU.
    bins : int, optional
        For float (and 32/64-bit integer) volumes: the lattice has between ``bins``
        and ``2·bins`` bins over the finite range (default 8192). Ignored for 8- and
        16-bit integer volumes, which get one bin per gray value.
    mask : array-like of bool, optional
        Same shape as ``vol`` (or broadcastable to it); only voxels where it is True
        are counted.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Histogram

    Raises
    ------
    ValueError
        If no finite voxel is left to count.

    Examples
    --------
    >>> import numpy as np
    >>> h = intensity_histogram(np.array([[[1, 1, 2, 5]]], np.uint8))
    >>> h.exact, h.centers.tolist(), h.counts.tolist()
    (True, [1.0, 2.0, 3.0, 4.0, 5.0], [2, 1, 0, 0, 1])
    """
    vol = unwrap(vol)
    mask = unwrap(mask)
    dtype = np.dtype(vol.dtype)
    exact = dtype.kind in "biu" and dtype.itemsize <= 2
    if bins is None:
        bins = 8192
    if not isinstance(bins, (int, np.integer)) or bins < 16:
        raise ValueError(f"bins must be an integer ≥ 16, got {bins!r}")
    e_min = _E_MIN.get(dtype.kind if dtype.kind in "biu" else dtype.itemsize, -1000)
    part = _run(vol, mask, int(bins), e_min, None, progress, "histogram pass")
    if not part.counts.size:
        raise ValueError(
            f"no finite voxel to histogram: {part.n_nonfinite} NaN/inf voxels and "
            f"{part.n_excluded} outside the mask"
        )
    hist = _finish(part, exact)
    if not exact:
        hist = _maybe_robust(vol, mask, hist, int(bins), e_min, progress)
    return hist


def _maybe_robust(vol, mask, hist: Histogram, bins: int, e_min: int, progress: bool) -> Histogram:
    """Re-histogram the robust range while outliers squeeze the bulk into few bins."""
    first = hist
    if not hist.vmax > hist.vmin:
        return hist  # constant: nothing to resolve
    if hist.bin_width <= 2.0**e_min:
        return hist  # one bin per value already (an integer volume): nothing finer exists
    for _ in range(3):
        lo, hi = (float(v) for v in hist.quantile([1e-4, 1 - 1e-4]))
        if (hi - lo) / hist.bin_width >= bins / 8 or hi <= lo:
            break
        if hist is first:
            warnings.warn(
                f"outliers stretch the intensity range to [{first.vmin:g}, {first.vmax:g}] "
                f"while 99.98 % of the voxels lie near [{lo:g}, {hi:g}]; histogramming "
                "that robust range again (values beyond it count in the end bins)",
                RuntimeWarning,
                stacklevel=3,
            )
        e = _exponent(hi - lo, bins, e_min, max(abs(lo), abs(hi)))
        part = _run(vol, mask, bins, e_min, (lo, hi, e), progress, "histogram pass (robust range)")
        robust = _finish(part, False)
        hist = Histogram(
            robust.counts,
            robust.edges,
            False,
            part.n_nonfinite,
            part.n_excluded,
            part.n_clipped,
            first.vmin,
            first.vmax,
        )
    return hist
