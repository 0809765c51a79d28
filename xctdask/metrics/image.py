"""Image quality of a denoised or reconstructed volume: PSNR and 3-D SSIM.

Both are lazy on Dask input. SSIM is computed chunk by chunk with a halo of
``win_size // 2`` voxels, so it equals scikit-image's ``structural_similarity`` on
the whole volume (same uniform window, sample covariance, K1 = 0.01, K2 = 0.03, mean
over the map with a ``win_size // 2`` border cropped).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from scipy.ndimage import uniform_filter

from xctdask.backend import (
    array_module,
    check_same_shape,
    is_dask,
    meta_like,
    unwrap,
    validate_volume,
)

__all__ = ["noise_level", "psnr", "ssim"]


def _data_range(reference: Any, data_range: float | None) -> Any:
    if data_range is not None:
        if not data_range > 0:
            raise ValueError(f"data_range must be positive, got {data_range}")
        return data_range
    return reference.max().astype(np.float64) - reference.min().astype(np.float64)


def psnr(test: Any, reference: Any, *, data_range: float | None = None) -> Any:
    """Peak signal-to-noise ratio in dB, ``10·log10(R² / MSE)``.

    ``R`` is ``data_range``, by default the reference's max − min (note: not the dtype
    range scikit-image uses for integers). Lazy on Dask input.

    Only voxels where the reference is finite count: a reference with NaN outside its
    field of view is scored inside it (xctdask's denoised output is NaN where its
    input was). A non-finite ``test`` voxel where the reference is finite makes the
    result NaN: PSNR is undefined there.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.linspace(0, 1, 100)
    >>> round(float(psnr(ref + 0.01, ref)), 2)
    40.0
    >>> ref[:10] = np.nan  # not scored, whatever the test holds there
    >>> round(float(psnr(ref + 0.01, ref)), 2)
    39.08
    """
    check_same_shape(test, reference, ("test", "reference"))
    test, reference = unwrap(test), unwrap(reference)
    reference = reference.astype(np.float64)
    scored = np.isfinite(reference)
    r = _finite_range(reference) if data_range is None else _data_range(reference, data_range)
    if data_range is None and not is_dask(r) and not r > 0:  # (Dask: -inf when computed)
        raise ValueError(
            "the reference is constant (its finite voxels span a range of 0), so PSNR "
            "has no peak to refer to: give data_range="
        )
    diff = np.where(scored, test.astype(np.float64) - reference, 0.0)
    mse = (diff * diff).sum() / scored.sum()
    return 10 * np.log10(r * r / mse)


def _uniform_filter(xp: Any):
    if xp is np:
        return uniform_filter
    from cupyx.scipy.ndimage import uniform_filter as on_gpu

    return on_gpu


def _ssim_map(x: Any, y: Any, win_size: int, c1: float, c2: float) -> Any:
    """The SSIM map of two NumPy or CuPy blocks, computed where they are; NaN where
    the window holds a non-finite voxel of either (the filters' running sums would
    carry a NaN along the whole line, so those voxels are zeroed first)."""
    xp = array_module(x, y)
    uniform_filter = _uniform_filter(xp)
    x = x.astype(xp.float64)
    y = y.astype(xp.float64)
    n = win_size**x.ndim
    bad = ~(xp.isfinite(x) & xp.isfinite(y))
    touched = None
    if bool(bad.any()):
        x, y = xp.where(bad, 0.0, x), xp.where(bad, 0.0, y)
        touched = uniform_filter(bad.astype(xp.float64), win_size) > 0.5 / n
    cov_norm = n / (n - 1)
    ux, uy = uniform_filter(x, win_size), uniform_filter(y, win_size)
    uxx, uyy = uniform_filter(x * x, win_size), uniform_filter(y * y, win_size)
    uxy = uniform_filter(x * y, win_size)
    vx, vy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux * ux + uy * uy + c1, vx + vy + c2
    smap = (a1 * a2) / (b1 * b2)
    return smap if touched is None else xp.where(touched, xp.nan, smap)


def ssim(test: Any, reference: Any, *, data_range: float | None = None, win_size: int = 7) -> Any:
    """Mean structural similarity of two 3-D volumes (uniform ``win_size``³ window).

    Matches ``skimage.metrics.structural_similarity(test, reference,
    data_range=R, win_size=win_size)`` computed in float64. On Dask input each chunk
    reads a halo of ``win_size // 2`` voxels from its neighbours (``map_overlap``) and
    the result stays lazy.

    Windows that hold a non-finite voxel are left out of the mean (a NaN exterior, as
    xctdask's denoised output has, is not scored), and the default data range is the
    reference's finite one. A non-finite ``test`` voxel where the reference is finite
    makes the result NaN: SSIM is undefined there.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.random.default_rng(0).random((10, 10, 10))
    >>> float(ssim(v, v))
    1.0
    """
    check_same_shape(test, reference, ("test", "reference"))
    validate_volume(test, name="test")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and ≥ 3, got {win_size}")
    if min(unwrap(test).shape) < win_size:
        raise ValueError(f"every axis must be ≥ win_size={win_size}; shape {unwrap(test).shape}")
    test, reference = unwrap(test), unwrap(reference)
    r = _finite_range(reference) if data_range is None else _data_range(reference, data_range)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    pad = win_size // 2
    crop = (slice(pad, -pad),) * 3
    if not (is_dask(test) or is_dask(reference)):
        return _finite_mean(_ssim_map(test, reference, win_size, c1, c2)[crop], test, reference)
    chunks = (test if is_dask(test) else reference).chunks
    test = da.asarray(test).rechunk(chunks)
    reference = da.asarray(reference).rechunk(chunks)
    small = any(min(c) < pad for c in chunks)
    if small:  # each chunk must be at least as deep as the halo
        target = tuple(max(pad, max(c)) for c in chunks)
        test, reference = test.rechunk(target), reference.rechunk(target)

    def block(x, y, c1, c2):
        return _ssim_map(x, y, win_size, float(c1), float(c2))

    # the constants may be lazy (data range of a Dask reference): pass them as 0-d
    # arrays, which blockwise broadcasts to every chunk, around an explicit overlap
    depth = {0: pad, 1: pad, 2: pad}
    x = da.overlap.overlap(test, depth=depth, boundary="none")
    y = da.overlap.overlap(reference, depth=depth, boundary="none")
    c1, c2 = da.asarray(c1), da.asarray(c2)
    smap = da.map_blocks(block, x, y, c1, c2, dtype=np.float64, meta=meta_like(x, np.float64))
    smap = da.overlap.trim_internal(smap, depth, boundary="none")
    return _finite_mean(smap[crop], test, reference)


def _finite_range(reference: Any) -> Any:
    """Max − min of the reference's finite voxels (lazy on Dask input)."""
    scored = np.isfinite(reference)
    top = np.where(scored, reference, -np.inf).max().astype(np.float64)
    return top - np.where(scored, reference, np.inf).min().astype(np.float64)


def _finite_mean(values: Any, test: Any, reference: Any) -> Any:
    """Mean of the finite ``values`` (windows that held no non-finite voxel); NaN
    when ``test`` is non-finite where the reference is finite."""
    finite = np.isfinite(values)
    mean = np.where(finite, values, 0.0).sum() / finite.sum()
    undefined = (~np.isfinite(test) & np.isfinite(reference)).any()
    if not is_dask(values):  # a NumPy (or CuPy) scalar, as ``.mean()`` gave
        return values.dtype.type(np.nan) if bool(undefined) else mean
    return da.where(undefined, np.nan, mean)


def noise_level(volume: Any, *, slices: int = 8, normalize: Any = None) -> float:
    """Standard deviation of a scan's noise, from a few slices (**computes** them).

    Immerkær's noise mask (J. Immerkær, "Fast noise variance estimation", CVIU 64(2),
    1996: the 3×3 difference of two Laplacians, [[1, -2, 1], [-2, 4, -2], [1, -2, 1]],
    which cancels a slice's linear and most of its smooth structure), with his mean of
    absolute responses replaced by their median (robust to edges): σ = median|I∗N| /
    (0.6745 · 6), 6 being the mask's norm, on ``slices`` slices spread evenly over z,
    averaged. With ``normalize=(mean, std)`` the volume is first mapped to
    ``(v - mean) / std``, so two scans normalised by their own statistics can be
    compared (how much noisier is the LQ scan?). Non-finite voxels are left out.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> smooth = np.zeros((4, 128, 128), np.float32)
    >>> round(noise_level(smooth + rng.normal(0, 0.5, smooth.shape)), 1)
    0.5
    """
    from scipy.ndimage import convolve

    validate_volume(volume)
    data = unwrap(volume)
    if slices < 1:
        raise ValueError(f"slices must be ≥ 1, got {slices!r}")
    picks = np.unique(np.linspace(0, data.shape[0] - 1, min(slices, data.shape[0])).round())
    taken = data[picks.astype(int)]
    taken = np.asarray(taken.compute() if is_dask(taken) else taken, dtype=np.float64)
    if normalize is not None:
        mean, std = (float(v) for v in np.asarray(normalize).ravel()[:2])
        taken = (taken - mean) / std
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    sigmas = []
    for image in taken:
        response = convolve(image, mask, mode="reflect")[1:-1, 1:-1]
        response = np.abs(response[np.isfinite(response)])
        if response.size:
            sigmas.append(float(np.median(response)) / (0.6745 * 6.0))
    if not sigmas:
        raise ValueError("the slices taken hold no finite voxel")
    return float(np.mean(sigmas))


def noise_spectrum(
    volume: Any,
    *,
    tile: int = 64,
    slices: int = 16,
    normalize: Any = None,
    field_of_view: Any = None,
) -> np.ndarray:
    """A scan's in-plane noise power spectrum, from differences of adjacent slices
    (**computes** ``2 · slices`` slices).

    A reconstruction's noise is not white: filtered back-projection shapes it with its
    ramp filter, few projection angles add streaks, and a detector's blur removes the
    highest frequencies. Two adjacent slices show nearly the same structure but noise
    drawn independently when each slice is reconstructed on its own (parallel-beam
    FBP), so ``(slice[z+1] − slice[z]) / √2`` is noise with the scan's spectrum. Its
    power is averaged over ``tile × tile`` windows (Hann-tapered, Welch's method) of
    ``slices`` slice pairs spread evenly over z. Voxels outside ``field_of_view`` (a
    :class:`~xctdask.pseudolabels.FieldOfView`, as ``mask="cylinder"`` finds) and
    non-finite ones are left out, each window's power divided by the taper's energy
    over the voxels it kept. With ``normalize=(mean, std)`` the grey values are first
    mapped to ``(v - mean) / std``, as in :func:`noise_level`.

    It counts as noise whatever changes from one slice to the next, so it is an upper
    bound when the structure changes within a voxel's height; noise that is correlated
    along z (cone-beam FDK) is partly missed.

    Parameters
    ----------
    volume : array or DataArray, 3-D with at least 2 slices
    tile : int
        Window side (≥ 8; at most the slice's sides).
    slices : int
        Slice pairs used.
    normalize : (mean, std), optional
    field_of_view : FieldOfView, optional

    Returns
    -------
    numpy.ndarray
        ``(tile, tile)`` float64 in NumPy's FFT order (``numpy.fft.fftfreq``): the noise
        variance per frequency, so its mean is the noise variance (a constant σ² for
        white noise of standard deviation σ).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> white = rng.normal(0, 0.5, (8, 128, 128))
    >>> spectrum = noise_spectrum(white, tile=32)
    >>> spectrum.shape, round(float(spectrum.mean()), 2)
    ((32, 32), 0.25)
    """
    validate_volume(volume)
    data = unwrap(volume)
    nz, ny, nx = data.shape
    if nz < 2:
        raise ValueError(f"a noise spectrum needs at least 2 slices, got {nz}")
    if not isinstance(tile, (int, np.integer)) or not 8 <= tile <= min(ny, nx):
        raise ValueError(f"tile must be an integer in 8..{min(ny, nx)} (the slice), got {tile!r}")
    if slices < 1:
        raise ValueError(f"slices must be ≥ 1, got {slices!r}")
    inside = np.ones((ny, nx), bool)
    if field_of_view is not None and not field_of_view.everything:
        inside = field_of_view.inside(np.arange(ny), np.arange(nx))
    firsts = np.unique(np.linspace(0, nz - 2, min(slices, nz - 1)).round().astype(int))
    taper = np.outer(np.hanning(tile), np.hanning(tile))
    total, energy = np.zeros((tile, tile)), 0.0
    for z in firsts:
        pair = data[z : z + 2]
        pair = np.asarray(pair.compute() if is_dask(pair) else pair, dtype=np.float64)
        if normalize is not None:
            mean, std = (float(v) for v in np.asarray(normalize).ravel()[:2])
            pair = (pair - mean) / std
        difference = (pair[1] - pair[0]) / np.sqrt(2.0)
        kept = inside & np.isfinite(difference)
        difference = np.where(kept, difference, 0.0)
        for y in range(0, ny - tile + 1, tile):
            for x in range(0, nx - tile + 1, tile):
                window = taper * kept[y : y + tile, x : x + tile]
                weight = float((window**2).sum())
                if weight < 0.05 * float((taper**2).sum()):
                    continue  # (almost) nothing of this window is kept
                patch = difference[y : y + tile, x : x + tile]
                patch = patch - (patch * window).sum() / window.sum()
                total += np.abs(np.fft.fft2(patch * window)) ** 2
                energy += weight
    if energy == 0:
        raise ValueError("no window of the slices taken lies inside the field of view")
    return total / energy
