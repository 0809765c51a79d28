"""Stage 1: pseudo labels by clustering voxel intensities, in two passes over the data.

1. **Histogram pass** (:func:`intensity_histogram`): one Dask reduction over all chunks,
   exact per gray value for 8/16-bit volumes, a fine power-of-two lattice for floats;
   NaN/inf and voxels outside a mask (e.g. ``mask="cylinder"``, the field of view) are
   left out and counted. The result does not depend on the chunking.
2. **Fit** on the histogram in milliseconds (:mod:`~xctdask.pseudolabels.fit1d`): the
   exact 1-D k-means optimum, Multi-Otsu, or a Gaussian mixture.
3. **Relabel pass** (:mod:`~xctdask.pseudolabels.relabel`): a lookup table or a few
   comparisons per chunk, lazily.

CuPy chunks are histogrammed and relabelled on their GPU. A multi-feature variant
(intensity, local mean, local std) fits k-means on a voxel sample instead.

Examples
--------
>>> import numpy as np, dask.array as da
>>> import xctdask as xd
>>> vol = da.from_array(np.repeat(np.arange(4, dtype=np.uint8), 16).reshape(4, 4, 4))
>>> labels = xd.pseudo_labels(vol, 2)        # fits now, labels lazily
>>> labels.compute()[:, 0, 0].tolist()
[0, 0, 1, 1]
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "fit1d": [
            "METHODS",
            "GaussianMixture1D",
            "decision_intervals",
            "gmm_1d",
            "kmeans_1d",
            "multiotsu_thresholds",
            "optimal_partition",
        ],
        "fov": ["FieldOfView", "cylinder_mask", "find_field_of_view"],
        "histogram": ["Histogram", "intensity_histogram"],
        "labeler": ["PseudoLabeler", "local_mean_sigma", "pseudo_labels"],
        "relabel": ["IntervalRule"],
    },
)

__all__ = [
    "METHODS",
    "FieldOfView",
    "GaussianMixture1D",
    "Histogram",
    "IntervalRule",
    "PseudoLabeler",
    "cylinder_mask",
    "decision_intervals",
    "find_field_of_view",
    "gmm_1d",
    "intensity_histogram",
    "kmeans_1d",
    "local_mean_sigma",
    "multiotsu_thresholds",
    "optimal_partition",
    "pseudo_labels",
]
