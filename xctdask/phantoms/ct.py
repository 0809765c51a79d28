"""Parallel-beam CT simulation and filtered back projection, slice by slice.

The forward model: line integrals of the attenuation map (scikit-image ``radon``),
photon counts drawn from a Poisson law around ``I0 · gain · exp(-p)``, where ``gain``
is a per-detector-pixel sensitivity error that flat-field correction does not remove
(this makes ring artefacts), then ``-log`` and filtered back projection
(``iradon``). High-quality (HQ) and low-quality (LQ) scans share one forward projection:
LQ keeps every ``k``-th angle, has fewer photons and stronger rings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage
from skimage.transform import iradon, radon

from xctdask.backend import unwrap

__all__ = ["ScanSettings", "reconstruct", "simulate_slab"]


@dataclass(frozen=True)
class ScanSettings:
    """Acquisition of the simulated HQ and LQ scans.

    Attributes
    ----------
    lq_angles : int
        Projections over 180° in the LQ scan (the HQ scan has ``hq_factor`` times more).
    hq_factor : int
        HQ angles per LQ angle; LQ angles are a subset of the HQ angles.
    hq_photons, lq_photons : float
        Incident photons per detector pixel and projection (flat field).
    hq_rings, lq_rings : float
        Standard deviation of the relative detector gain error.
    max_line_integral : float
        Attenuation scale: the longest path through the sample absorbs ``1 − e^-p``.
    """

    lq_angles: int = 91
    hq_factor: int = 4
    hq_photons: float = 2e5
    lq_photons: float = 1e4
    hq_rings: float = 0.002
    lq_rings: float = 0.01
    max_line_integral: float = 2.0

    @property
    def hq_angles(self) -> int:
        return self.lq_angles * self.hq_factor


def _pad_square(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    ny, nx = image.shape
    side = max(ny, nx)
    oy, ox = (side - ny) // 2, (side - nx) // 2
    square = np.zeros((side, side), image.dtype)
    square[oy : oy + ny, ox : ox + nx] = image
    return square, (slice(oy, oy + ny), slice(ox, ox + nx))


def _scan(sinogram, theta, photons, gain, rng) -> np.ndarray:
    """Noisy, ring-affected line integrals → filtered back projection."""
    expected = photons * gain[:, None] * np.exp(-sinogram)
    counts = np.maximum(rng.poisson(expected), 1)
    measured = -np.log(counts / photons)
    return iradon(measured, theta=theta, circle=True, filter_name="ramp")


def simulate_slab(
    attenuation: np.ndarray,
    z0: int,
    *,
    settings: ScanSettings,
    scale: float,
    seed: int,
    ring_profile: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """HQ and LQ reconstructions of a slab of attenuation maps (relative units).

    ``scale`` converts relative attenuation to attenuation per voxel; the
    reconstructions are divided by it again, so they are in the same units as the
    input. Slice ``z`` draws its noise from ``SeedSequence(seed, spawn_key=(z,))``:
    the result does not depend on how slices are grouped into slabs.
    """
    theta_hq = np.linspace(0.0, 180.0, settings.hq_angles, endpoint=False)
    theta_lq = theta_hq[:: settings.hq_factor]
    hq = np.empty(attenuation.shape, np.float32)
    lq = np.empty(attenuation.shape, np.float32)
    ring_hq, ring_lq = ring_profile
    for i, image in enumerate(attenuation):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(z0 + i,)))
        square, crop = _pad_square(image.astype(np.float64) * scale)
        sinogram = radon(square, theta=theta_hq, circle=True)
        side = square.shape[0]
        jitter = rng.normal(size=(2, side))
        gain_hq = 1 + settings.hq_rings * (ring_hq[:side] + 0.3 * jitter[0])
        gain_lq = 1 + settings.lq_rings * (ring_lq[:side] + 0.3 * jitter[1])
        rec_hq = _scan(sinogram, theta_hq, settings.hq_photons, gain_hq, rng)
        rec_lq = _scan(
            sinogram[:, :: settings.hq_factor], theta_lq, settings.lq_photons, gain_lq, rng
        )
        hq[i] = rec_hq[crop] / scale
        lq[i] = rec_lq[crop] / scale
    return hq, lq


def _reconstruct_rows(
    projections: np.ndarray,
    theta: np.ndarray,
    flat: np.ndarray | None,
    dark: np.ndarray | None,
    shift: float,
    filter_name: str,
) -> np.ndarray:
    """(angle, row, col) projections of some detector rows → (row, col, col) slices."""
    p = projections.astype(np.float64)
    if flat is not None:
        d = 0.0 if dark is None else dark
        p = (p - d) / np.maximum(flat - d, 1e-6)
        p = -np.log(np.clip(p, 1e-6, None))
    n_cols = p.shape[2]
    out = np.empty((p.shape[1], n_cols, n_cols), np.float32)
    for r in range(p.shape[1]):
        sinogram = p[:, r, :].T  # (col, angle)
        if shift:
            sinogram = ndimage.shift(sinogram, (shift, 0), order=1, mode="nearest")
        out[r] = iradon(sinogram, theta=theta, circle=True, filter_name=filter_name)
    return out


def _check_angles(angles: np.ndarray) -> None:
    """Warn when the angles look like radians: many projections over at most 2π
    "degrees" is no scan anyone makes (a Data Exchange file without a ``units``
    attribute on its angles is read as degrees)."""
    span = float(np.ptp(angles)) if angles.size else 0.0
    if angles.size >= 8 and 0 < span <= 2 * np.pi + 1e-6:
        warnings.warn(
            f"the {angles.size} projection angles span only {span:.4g} degrees; if they "
            "are radians, pass np.degrees(angles)",
            UserWarning,
            stacklevel=3,
        )


def _check_fields(flat: Any, dark: Any, detector: tuple[int, ...]) -> None:
    """Flat and dark fields must cover the detector, and flats must be brighter."""
    for field, name in ((flat, "flats"), (dark, "darks")):
        if field is not None and tuple(field.shape) != detector:
            raise ValueError(
                f"{name} are frames of shape {tuple(field.shape)}, the projections' "
                f"detector is {detector} (row, col)"
            )
    if flat is not None:
        not_brighter = float(np.mean(flat - (0.0 if dark is None else dark) <= 0))
        if not_brighter > 0.01:
            raise ValueError(
                f"the flats are not brighter than the darks at {not_brighter:.0%} of the "
                "detector pixels: are flats and darks swapped, or is a field empty?"
            )


def reconstruct(
    projections: Any,
    angles: Any = None,
    *,
    flats: Any = None,
    darks: Any = None,
    center: float | None = None,
    angle_step: int = 1,
    filter_name: str = "ramp",
) -> xr.DataArray:
    """Filtered back projection of parallel-beam projections, one detector row per slice.

    Steps: flat and dark correction ``(P − D̄) / (F̄ − D̄)`` with the mean flat and dark
    frames, ``−log``, a shift that puts the rotation centre at the detector middle, and
    scikit-image ``iradon`` per detector row.

    Parameters
    ----------
    projections : array or xarray.Dataset
        Projections ``(angle, row, col)``; or the Dataset of
        :func:`xctdask.io.open_projections`, whose ``data``, ``flats``, ``darks`` and
        ``angle`` are used. Without flats, projections are taken as line integrals
        already.
    angles : array, optional
        Projection angles in degrees (required unless a Dataset is given).
    flats, darks : array, optional
        Flat (beam, no sample) and dark (no beam) frames ``(frame, row, col)``.
    center : float, optional
        Rotation centre in detector columns; default: the detector middle.
    angle_step : int
        Use every ``angle_step``-th projection (an undersampled, lower-quality scan).
    filter_name : str
        ``iradon`` filter.

    Returns
    -------
    xarray.DataArray
        Slices ``(z, y, x)`` = (detector row, col, col). Dask-backed (one task per
        detector row) for Dask input, NumPy-backed otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.transform import radon
    >>> image = np.zeros((32, 32)); image[12:20, 10:22] = 1
    >>> theta = np.linspace(0, 180, 64, endpoint=False)
    >>> proj = radon(image, theta, circle=True).T[:, None, :]   # (angle, row, col)
    >>> rec = reconstruct(proj, theta)
    >>> rec.shape, round(float(rec[0, 16, 16]), 1)
    ((1, 32, 32), 1.0)
    """
    if isinstance(projections, xr.Dataset):
        ds = projections
        projections = ds["data"]
        angles = ds["angle"].values if angles is None else angles
        flats = ds.get("flats") if flats is None else flats
        darks = ds.get("darks") if darks is None else darks
    if angles is None:
        raise ValueError("angles (degrees) are required")
    data = unwrap(projections)
    if data.ndim != 3:
        raise ValueError(f"projections must be 3-D (angle, row, col); got shape {data.shape}")
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (data.shape[0],):
        raise ValueError(f"{angles.size} angles for {data.shape[0]} projections")
    if angle_step < 1:
        raise ValueError(f"angle_step must be ≥ 1, got {angle_step}")
    _check_angles(angles)
    data, angles = data[::angle_step], angles[::angle_step]
    flat = None if flats is None else np.asarray(unwrap(flats), np.float64).mean(axis=0)
    dark = None if darks is None else np.asarray(unwrap(darks), np.float64).mean(axis=0)
    _check_fields(flat, dark, tuple(data.shape[1:]))
    n_cols = data.shape[2]
    shift = 0.0 if center is None else n_cols // 2 - float(center)
    if isinstance(data, da.Array):
        # one task per detector row: (row, angle, col) blocks, each → (row, y, x) slices
        by_row = data.transpose(1, 0, 2).rechunk({0: 1, 1: -1, 2: -1})

        def block(b, block_info=None):
            rows = slice(*block_info[0]["array-location"][0])
            f = None if flat is None else flat[rows]
            d = None if dark is None else dark[rows]
            return _reconstruct_rows(b.transpose(1, 0, 2), angles, f, d, shift, filter_name)

        slices = by_row.map_blocks(
            block,
            chunks=(by_row.chunks[0], (n_cols,), (n_cols,)),
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
        )
    else:
        slices = _reconstruct_rows(np.asarray(data), angles, flat, dark, shift, filter_name)
    coords = {d: np.arange(n, dtype=float) for d, n in zip("zyx", slices.shape, strict=True)}
    return xr.DataArray(
        slices,
        dims=("z", "y", "x"),
        coords=coords,
        attrs={"voxel_size": (1.0, 1.0, 1.0), "unit": "voxel", "n_angles": int(angles.size)},
        name="reconstruction",
    )
