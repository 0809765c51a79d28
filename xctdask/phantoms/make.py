"""``make``: a synthetic SR-CT scan with exact ground truth."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from xctdask.phantoms.ct import ScanSettings, simulate_slab
from xctdask.phantoms.geometry import GEOMETRIES, KINDS, Geometry

__all__ = ["KINDS", "make"]


def _block(
    geometry: Geometry,
    z0: int,
    z1: int,
    settings: ScanSettings,
    scale: float,
    seed: int,
    rings: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    labels = geometry.labels(z0, z1)
    attenuation = geometry.attenuation(labels, z0, z1)
    hq, lq = simulate_slab(
        attenuation, z0, settings=settings, scale=scale, seed=seed, ring_profile=rings
    )
    return np.stack([labels.astype(np.float32), attenuation, hq, lq])


def make(
    kind: str = "fibre-composite",
    shape: tuple[int, int, int] = (64, 256, 256),
    seed: int = 0,
    *,
    settings: ScanSettings | None = None,
    chunks: int = 8,
    lazy: bool = False,
) -> xr.Dataset:
    """Make a synthetic CT volume: exact labels, the true attenuation, HQ and LQ scans.

    Each z slice is simulated as parallel-beam CT (see :mod:`xctdask.phantoms.ct`):
    HQ with ``settings.hq_angles`` (364) projections and many photons, LQ with 91
    projections, ~70× fewer photons and stronger ring artefacts.

    Parameters
    ----------
    kind : {"fibre-composite", "corrosion", "crystal"}
        The sample; see :mod:`xctdask.phantoms.geometry` for what each contains and
        its class fractions.
    shape : (z, y, x)
        Volume shape in voxels.
    seed : int
        Everything (geometry, noise, rings) follows from it; the same seed gives the
        same volume whatever ``chunks`` is.
    settings : ScanSettings, optional
        Angles, photons, ring strength.
    chunks : int
        Slices per simulation task.
    lazy : bool
        Return Dask-backed variables (compute them together, e.g. ``ds.compute()`` or
        by writing ``ds`` to Zarr, so the simulation runs once); default computes now
        with the active Dask scheduler.

    Returns
    -------
    xarray.Dataset
        ``labels`` (uint8), ``attenuation`` (noise-free map, float32), ``hq`` and ``lq``
        (float32 reconstructions in the same units), dims ``(z, y, x)``; attributes
        ``class_names``, ``kind``, ``seed`` and the scan settings.

    Examples
    --------
    >>> ds = make("crystal", shape=(4, 32, 32), seed=1)
    >>> sorted(ds.data_vars), ds.labels.dtype.name
    (['attenuation', 'hq', 'labels', 'lq'], 'uint8')
    """
    if kind not in GEOMETRIES:
        raise ValueError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    whole = [isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape]
    if len(shape) != 3 or not all(whole) or min(shape) < 1:
        raise ValueError(f"shape must be three positive integer sizes (z, y, x), got {shape}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
    if min(shape[1:]) < 16:
        raise ValueError(f"slices must be at least 16×16 voxels, got {shape[1:]}")
    if chunks < 1:
        raise ValueError(f"chunks must be ≥ 1, got {chunks}")
    settings = settings or ScanSettings()
    shape = tuple(int(s) for s in shape)
    geometry = GEOMETRIES[kind](shape=shape, seed=seed)
    # attenuation per voxel such that the longest chord absorbs 1 - exp(-max_line_integral)
    scale = settings.max_line_integral / (max(geometry.mu) * 1.35 * 2 * geometry.radius)
    ring_rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    side = max(shape[1:])
    rings = (ring_rng.normal(size=side), ring_rng.normal(size=side))

    nz, ny, nx = shape
    bounds = [(z0, min(z0 + chunks, nz)) for z0 in range(0, nz, chunks)]
    blocks = [
        da.from_delayed(
            dask.delayed(_block, pure=True)(geometry, z0, z1, settings, scale, seed, rings),
            shape=(4, z1 - z0, ny, nx),
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), np.float32),
        )
        for z0, z1 in bounds
    ]
    stack = da.concatenate(blocks, axis=1)
    variables = {
        "labels": stack[0].astype(np.uint8),
        "attenuation": stack[1],
        "hq": stack[2],
        "lq": stack[3],
    }
    coords = {d: np.arange(n, dtype=float) for d, n in zip("zyx", shape, strict=True)}
    ds = xr.Dataset(
        {name: (("z", "y", "x"), arr) for name, arr in variables.items()},
        coords=coords,
        attrs={
            "kind": kind,
            "seed": seed,
            "class_names": list(geometry.class_names),
            "n_classes": len(geometry.class_names),
            "hq_angles": settings.hq_angles,
            "lq_angles": settings.lq_angles,
            "voxel_size": (1.0, 1.0, 1.0),
            "unit": "voxel",
        },
    )
    ds["labels"].attrs.update(kind="labels", class_names=list(geometry.class_names))
    return ds if lazy else ds.compute()
