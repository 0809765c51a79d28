"""The classical-filter baseline of denoising: the best filter, tuned on training data.

A network trained to map a low-quality scan to a clean one is worth its training only
if it beats what a user gets from a filter in seconds. :class:`FilterBaseline` is that
reference, built from maintained parts: scipy's Gaussian and median filters and
scikit-image's non-local means, each with a grid of strengths. ``fit`` applies every
candidate to the noisy scan, maps its output to the clean scan's grey values with the
least-squares line over the training voxels (the network learns that map too), and keeps
the candidate of highest PSNR there; ``transform`` applies the chosen filter and map.
Tune it on the voxels a network trains on and score both on held-out voxels.

It computes in memory, slice by slice (the filters are 2-D, per z-slice, like
:class:`~xctdask.metrics.ForestBaseline`): a reference for benchmarks, not a
terabyte method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xctdask.backend import check_same_shape, is_dask, to_host, unwrap
from xctdask.metrics.image import psnr

__all__ = ["FILTERS", "FilterBaseline"]

#: Candidate strengths per filter: the Gaussian's σ (pixels), the median's window side
#: (pixels), non-local means' ``h`` as a multiple of the noise level.
FILTERS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
    "median": (3, 5, 7, 9, 11, 13, 15, 19),
    "nl-means": (0.6, 1.0, 1.5, 2.0, 3.0),
}


def _filtered(image: np.ndarray, name: str, strength: float, noise: float) -> np.ndarray:
    """``image`` (z, y, x) filtered slice by slice (float32)."""
    from scipy import ndimage

    out = np.empty(image.shape, np.float32)
    for z, plane in enumerate(image.astype(np.float32, copy=False)):
        if name == "gaussian":
            out[z] = ndimage.gaussian_filter(plane, strength)
        elif name == "median":
            out[z] = ndimage.median_filter(plane, int(strength))
        else:
            from skimage.restoration import denoise_nl_means

            out[z] = denoise_nl_means(
                plane,
                h=strength * noise,
                sigma=noise,
                patch_size=5,
                patch_distance=10,
                fast_mode=True,
            )
    return out


@dataclass
class FilterBaseline:
    """The classical filter (and grey-value map) of highest PSNR on training voxels.

    Parameters
    ----------
    filters : dict, optional
        Filter name → candidate strengths; default :data:`FILTERS` (Gaussian, median,
        non-local means). A subset, e.g. ``{"gaussian": (1.0, 2.0)}``, tunes only those.

    Attributes (after ``fit``)
    --------------------------
    choice_ : (str, float)
        The chosen filter and strength.
    scale_, offset_ : float
        The chosen candidate's grey-value map ``scale_ · filtered + offset_`` to the
        clean scan.
    maps_ : dict
        ``(filter, strength)`` → ``(scale, offset)`` of every candidate.
    scores_ : dict
        ``(filter, strength)`` → training PSNR (dB) of every candidate.
    best_ : dict
        Filter → its best training PSNR, for a table of "best Gaussian / median / NLM".
    noise_ : float
        The noise level non-local means was tuned with: the standard deviation of
        noisy − clean over the training voxels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((2, 48, 48), np.float32); clean[:, 12:36, 12:36] = 1
    >>> noisy = clean + rng.normal(0, 0.3, clean.shape).astype(np.float32)
    >>> base = FilterBaseline({"gaussian": (0.5, 1.5), "median": (3,)}).fit(noisy, clean)
    >>> base.choice_
    ('gaussian', 1.5)
    >>> base.transform(noisy).shape
    (2, 48, 48)
    """

    filters: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(FILTERS))

    def __post_init__(self) -> None:
        unknown = set(self.filters) - set(FILTERS)
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)}; choose from {list(FILTERS)}")
        if not any(len(v) for v in self.filters.values()):
            raise ValueError("give at least one filter strength to try")

    def fit(
        self, noisy: Any, clean: Any, mask: Any = None, *, data_range: float | None = None
    ) -> FilterBaseline:
        """Try every candidate on ``noisy`` (**computes** it, in memory) and keep the one
        whose mapped output is closest to ``clean`` in PSNR over ``mask`` (default: every
        voxel). ``data_range`` defaults to the clean voxels' max − min there."""
        noisy, clean = self._volumes(noisy, clean)
        mask = self._mask(mask, noisy.shape)
        reference = clean[mask].astype(np.float64)
        if data_range is None:
            data_range = float(reference.max() - reference.min())
        self.noise_ = float(np.std(noisy[mask].astype(np.float64) - reference)) or 1.0
        self.scores_: dict[tuple[str, float], float] = {}
        self.maps_: dict[tuple[str, float], tuple[float, float]] = {}
        for name, strengths in self.filters.items():
            for strength in strengths:
                values = _filtered(noisy, name, strength, self.noise_)[mask].astype(np.float64)
                scale, offset = np.polyfit(values, reference, 1)
                self.maps_[name, strength] = (float(scale), float(offset))
                mapped = scale * values + offset
                self.scores_[name, strength] = float(psnr(mapped, reference, data_range=data_range))
        self.choice_ = max(self.scores_, key=self.scores_.__getitem__)
        self.best_ = {
            name: max(v for (n, _), v in self.scores_.items() if n == name)
            for name in self.filters
            if self.filters[name]
        }
        return self

    @property
    def scale_(self) -> float:
        """The chosen candidate's grey-value scale (from ``maps_``)."""
        return self.maps_[self.choice_][0]

    @property
    def offset_(self) -> float:
        """The chosen candidate's grey-value offset (from ``maps_``)."""
        return self.maps_[self.choice_][1]

    def transform(self, noisy: Any, *, choice: tuple[str, float] | None = None) -> np.ndarray:
        """``noisy`` filtered with the chosen filter (or ``choice``, any candidate tried)
        and mapped to the clean scan's grey values with that candidate's map
        (**computes**, in memory; float32)."""
        if not hasattr(self, "choice_"):
            raise RuntimeError("this FilterBaseline is not fitted: call fit() first")
        noisy = self._volume(noisy)
        choice = tuple(choice) if choice is not None else self.choice_
        if choice not in self.maps_:
            raise ValueError(f"choice must be a candidate tried by fit, one of {list(self.maps_)}")
        scale, offset = self.maps_[choice]
        out = _filtered(noisy, choice[0], choice[1], self.noise_)
        return (scale * out + offset).astype(np.float32)

    @staticmethod
    def _volume(volume: Any) -> np.ndarray:
        data = unwrap(volume)
        array = to_host(data.compute() if is_dask(data) else data)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"expected a 2-D image or a 3-D volume, got shape {array.shape}")
        return array

    def _volumes(self, noisy: Any, clean: Any) -> tuple[np.ndarray, np.ndarray]:
        check_same_shape(noisy, clean, ("noisy", "clean"))
        return self._volume(noisy), self._volume(clean)

    @staticmethod
    def _mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
        if mask is None:
            return np.ones(shape, bool)
        mask = np.asarray(unwrap(mask), bool)
        mask = np.broadcast_to(mask, shape) if mask.ndim < len(shape) else mask
        if mask.shape != shape or not mask.any():
            raise ValueError(
                f"mask must select some voxels of a volume of shape {shape}, got "
                f"{'no voxels' if mask.shape == shape else f'shape {mask.shape}'}"
            )
        return mask
