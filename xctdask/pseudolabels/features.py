"""Local features for clustering: intensity, local mean and local standard deviation.

Intensity alone cannot tell a noisy bright voxel in a dark phase from a voxel of a
bright phase; the mean and standard deviation over a Gaussian window of scale
``sigma`` can. Features are computed per chunk with a halo of ``ceil(4·sigma)``
voxels, so chunk borders do not change them.

The fit uses a random sample of voxels chosen by a hash of each voxel's global index,
so the sample (and the fit) is the same whatever the chunking.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["FEATURES", "compute_features", "sample_features"]

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


def halo(sigma: float) -> int:
    """Halo (voxels) that makes the Gaussian features exact inside a chunk."""
    return math.ceil(4 * sigma)


def compute_features(block: np.ndarray, features: tuple[str, ...], sigma: float) -> np.ndarray:
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
    sigma: float,
    depth: int,
    fraction: float,
    seed: int,
    shape: tuple[int, ...],
    location: tuple[tuple[int, int], ...],
) -> np.ndarray:
    """Feature rows ``(global index, features...)`` of the chosen voxels of one chunk."""
    (z0, z1), (y0, y1), (x0, x1) = location
    core = tuple(slice(depth, depth + n) for n in (z1 - z0, y1 - y0, x1 - x0))
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
    sigma: float,
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

    padded = da.overlap.overlap(vol, depth={0: depth, 1: depth, 2: depth}, boundary="reflect")
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
