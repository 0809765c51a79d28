"""Local features for clustering: intensity, local mean and local standard deviation.

Intensity alone cannot tell a noisy bright voxel in a dark phase from a voxel of a
bright phase; the mean and standard deviation over a Gaussian window of scale
``sigma`` (voxels; a number, or one per axis ``(z, y, x)`` where 0 leaves an axis
alone) can. Features are computed per chunk with a halo of ``ceil(4·sigma)`` voxels
per axis, so chunk borders do not change them.

:func:`local_mean` is the Gaussian mean of the valid voxels only (a normalised
convolution): non-finite voxels and voxels outside a mask (the field of view) neither
count nor spread into their neighbours.

The fit uses a random sample of voxels chosen by a hash of each voxel's global index,
so the sample (and the fit) is the same whatever the chunking.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["FEATURES", "compute_features", "halo", "local_mean", "sample_features"]

FEATURES = ("intensity", "mean", "std")


def check_features(features: Any) -> tuple[str, ...]:
    """Validate a feature list; a single string means that one feature."""
    if isinstance(features, str):
        features = (features,)
    features = tuple(features)
    unknown = [f for f in features if f not in FEATURES]
    if not features or unknown or len(set(features)) != len(features):
        raise ValueError(f"features must be distinct names from {FEATURES}; got {features!r}")
    return features


def per_axis(sigma: Any, ndim: int = 3) -> tuple[float, ...]:
    """``sigma`` as one float per axis (a number means the same on every axis)."""
    if isinstance(sigma, (int, float, np.integer, np.floating)):
        return (float(sigma),) * ndim
    return tuple(float(s) for s in sigma)


def halo(sigma: Any) -> tuple[int, ...]:
    """Halo (voxels per axis) that makes the Gaussian features exact inside a chunk.

    Examples
    --------
    >>> halo(1.0), halo((0, 1.5, 1.5))
    ((4, 4, 4), (0, 6, 6))
    """
    return tuple(math.ceil(4 * s) for s in per_axis(sigma))


def local_mean(block: Any, sigma: Any, valid: Any = None) -> np.ndarray:
    """Gaussian-weighted mean of the valid voxels around each voxel (float32).

    ``sum(G·v·x) / sum(G·v)`` with ``v`` = finite and ``valid`` (a boolean array of
    ``block``'s shape, or None): a voxel next to the edge of the field of view or to a
    NaN averages only valid neighbours. Voxels with no valid neighbour within the
    window are NaN (a non-finite voxel itself gets its valid neighbours' mean: the
    caller decides what it is). Borders reflect (as ``map_overlap(boundary="reflect")`` does).

    Examples
    --------
    >>> x = np.zeros((1, 1, 6), np.float32); x[..., 3:] = 1; x[..., 0] = np.nan
    >>> [round(float(v), 2) for v in local_mean(x, (0, 0, 0.5))[0, 0]]
    [0.0, 0.0, 0.11, 0.89, 1.0, 1.0]
    """
    from scipy import ndimage

    from xctdask.backend import to_host

    x = np.asarray(to_host(block), np.float32)
    weight = np.isfinite(x)
    if valid is not None:
        weight &= np.asarray(to_host(valid), bool)
    sig = per_axis(sigma, x.ndim)
    total = ndimage.gaussian_filter(np.where(weight, x, 0), sig, mode="reflect", truncate=4.0)
    count = ndimage.gaussian_filter(weight.astype(np.float32), sig, mode="reflect", truncate=4.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1e-6, total / count, np.float32(np.nan)).astype(np.float32)


def compute_features(block: np.ndarray, features: tuple[str, ...], sigma: Any) -> np.ndarray:
    """Feature stack of shape ``(len(features), *block.shape)`` (float32).

    Examples
    --------
    >>> f = compute_features(np.ones((4, 4, 4)), ("intensity", "mean", "std"), 1.0)
    >>> f.shape, float(f[2].max()) < 1e-3
    ((3, 4, 4, 4), True)
    """
    from scipy import ndimage

    x = np.asarray(block, np.float32)  # scipy filters: host data (callers pass to_host)
    out = np.empty((len(features), *x.shape), np.float32)
    mean = None
    if "mean" in features or "std" in features:
        mean = ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=4.0)
    for i, name in enumerate(features):
        if name == "intensity":
            out[i] = x
        elif name == "mean":
            out[i] = mean
        else:
            second = ndimage.gaussian_filter(x * x, sigma, mode="reflect", truncate=4.0)
            out[i] = np.sqrt(np.maximum(second - mean * mean, 0))
    return out


def _hash_uniform(index: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per integer index (splitmix64), the same on any chunking."""
    z = index.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def _sample_block(
    padded: np.ndarray,
    mask: np.ndarray | None,
    features: tuple[str, ...],
    sigma: Any,
    depth: tuple[int, ...],
    fraction: float,
    seed: int,
    shape: tuple[int, ...],
    location: tuple[tuple[int, int], ...],
) -> np.ndarray:
    """Feature rows ``(global index, features...)`` of the chosen voxels of one chunk."""
    (z0, z1), (y0, y1), (x0, x1) = location
    core = tuple(slice(h, h + n) for h, n in zip(depth, (z1 - z0, y1 - y0, x1 - x0), strict=True))
    zz, yy, xx = np.meshgrid(
        np.arange(z0, z1), np.arange(y0, y1), np.arange(x0, x1), indexing="ij", sparse=True
    )
    flat = (zz * shape[1] + yy) * shape[2] + xx
    chosen = _hash_uniform(flat, seed) < fraction
    values = padded[core]
    chosen &= np.isfinite(values)
    if mask is not None:
        chosen &= mask
    if not chosen.any():
        return np.empty((1, 1, 1, 0, len(features) + 1))
    stack = compute_features(padded, features, sigma)[(slice(None), *core)]
    rows = stack[:, chosen].T.astype(np.float64)
    order = flat[chosen].astype(np.float64)[:, None]
    return np.concatenate([order, rows], axis=1)[None, None, None]


def sample_features(
    vol: da.Array,
    mask: da.Array | None,
    features: tuple[str, ...],
    sigma: Any,
    n_samples: int,
    seed: int,
    progress: bool = False,
) -> np.ndarray:
    """About ``n_samples`` feature rows from random voxels (**computes**).

    Rows are ordered by global voxel index, so the result does not depend on the
    chunking. Non-finite voxels and voxels outside ``mask`` are never chosen.
    """
    depth = halo(sigma)
    fraction = min(1.0, n_samples / vol.size)
    import dask
    import dask.array as da

    from xctdask._progress import compute

    padded = da.overlap.overlap(vol, depth=dict(enumerate(depth)), boundary="reflect")
    blocks = padded.to_delayed().ravel()
    masks = (
        [None] * len(blocks)
        if mask is None
        else da.asarray(mask).rechunk(vol.chunks).to_delayed().ravel()
    )
    locations = _block_locations(vol.chunks)
    sample = dask.delayed(_sample_block, pure=True)
    rows = [
        sample(b, m, features, sigma, depth, fraction, seed, vol.shape, loc)
        for b, m, loc in zip(blocks, masks, locations, strict=True)
    ]
    (parts,) = compute(rows, progress=progress, description="feature sample")
    table = np.concatenate([p.reshape(-1, len(features) + 1) for p in parts])
    table = table[np.argsort(table[:, 0], kind="stable")]
    return table[:, 1:]


def _block_locations(chunks: tuple[tuple[int, ...], ...]) -> list:
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in chunks]
    return [
        tuple((int(s), int(s + n)) for s, n in zip(idx_starts, idx_sizes, strict=True))
        for idx_starts, idx_sizes in zip(
            _product(starts), _product([list(c) for c in chunks]), strict=True
        )
    ]


def _product(lists):
    import itertools

    return list(itertools.product(*lists))
