"""The random-forest baseline: what ilastik-style pixel classification gives.

Users with a few annotated slices who do not use a network train a random forest on a
bank of filter responses (ilastik's "Pixel Classification": Gaussian smoothing, edge
and texture filters at several scales). This module is that baseline, built from
maintained parts: scikit-image's ``multiscale_basic_features`` (intensity, gradient
magnitude and Hessian-eigenvalue texture at scales from ``sigma_min`` to ``sigma_max``)
per z-slice and scikit-learn's ``RandomForestClassifier``. Every quality figure of the
library's benchmarks is shown next to it.

It computes in memory, slice by slice: a reference for benchmarks and small volumes,
not a terabyte method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xctdask.backend import UNLABELLED, to_host, unwrap

__all__ = ["ForestBaseline"]


@dataclass
class ForestBaseline:
    """Random forest on 2-D multiscale filter features, fitted on sparse labels.

    Parameters
    ----------
    sigma_min, sigma_max : float
        Smallest and largest filter scale (voxels); ilastik's defaults span 0.3–10.
    n_estimators, max_depth : int
        Forest size (scikit-image's trainable-segmentation example uses 50 and 10).
    max_samples : int
        At most this many labelled voxels train the forest, drawn class-balanced.
    seed : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = np.zeros((2, 32, 32), np.uint8); truth[:, 8:24, 8:24] = 1
    >>> image = truth + rng.normal(0, 0.3, truth.shape)
    >>> sparse = np.full_like(truth, 255); sparse[0] = truth[0]
    >>> pred = ForestBaseline(n_estimators=20).fit(image, sparse, 2).predict(image)
    >>> float((pred[1] == truth[1]).mean()) > 0.95
    True
    """

    sigma_min: float = 0.5
    sigma_max: float = 16.0
    n_estimators: int = 100
    max_depth: int | None = 16
    max_samples: int = 200_000
    seed: int = 0
    n_jobs: int = -1
    classes_: np.ndarray | None = field(default=None, init=False, repr=False)
    normalization_: tuple[float, float] = field(default=(0.0, 1.0), init=False, repr=False)

    def features(self, image: Any) -> np.ndarray:
        """``(z, y, x, n_features)`` float32 filter responses, slice by slice (the
        image standardised with the mean and std of the image ``fit`` saw)."""
        from skimage.feature import multiscale_basic_features

        data = np.asarray(to_host(unwrap(image)), dtype=np.float32)
        if data.ndim != 3:
            raise ValueError(f"the image must be 3-D (z, y, x), got shape {data.shape}")
        mean, std = self.normalization_
        data = np.nan_to_num((data - mean) / std)
        return np.stack(
            [
                multiscale_basic_features(
                    plane, sigma_min=self.sigma_min, sigma_max=self.sigma_max
                ).astype(np.float32)
                for plane in data
            ]
        )

    def fit(self, image: Any, labels: Any, n_classes: int) -> ForestBaseline:
        """Train on the labelled voxels (255 = unlabelled) of ``image``; **computes**."""
        from sklearn.ensemble import RandomForestClassifier

        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"sigma_min and sigma_max must be 0 < sigma_min ≤ sigma_max, got "
                f"{self.sigma_min} and {self.sigma_max}"
            )
        truth = np.asarray(to_host(unwrap(labels)))
        if truth.shape != np.shape(unwrap(image)):
            raise ValueError(f"labels {truth.shape} and image {np.shape(image)} differ in shape")
        if truth.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers (255 = unlabelled), got {truth.dtype}")
        is_labelled = truth != UNLABELLED
        labelled = truth[is_labelled]
        if labelled.size == 0:
            raise ValueError("the labels hold no labelled voxel (all 255)")
        outside = np.unique(labelled[(labelled < 0) | (labelled >= n_classes)])
        if outside.size:  # they were left out of training without a word
            raise ValueError(
                f"labels hold values {outside.tolist()[:8]} outside 0..{n_classes - 1} "
                "(255 marks unlabelled voxels)"
            )
        annotated = np.flatnonzero(is_labelled.reshape(truth.shape[0], -1).any(1))
        data = np.asarray(to_host(unwrap(image)), dtype=np.float32)
        finite = data[np.isfinite(data)]
        self.normalization_ = (float(finite.mean()), max(float(finite.std()), 1e-12))
        feats = self.features(data[annotated])
        sub = truth[annotated]
        rng = np.random.default_rng(self.seed)
        chosen = []
        present = [c for c in range(n_classes) if (sub == c).any()]
        per_class = max(1, self.max_samples // max(len(present), 1))
        for c in present:
            where = np.flatnonzero(sub.ravel() == c)
            chosen.append(rng.choice(where, min(per_class, where.size), replace=False))
        index = np.concatenate(chosen)
        x = feats.reshape(-1, feats.shape[-1])[index]
        y = sub.ravel()[index]
        self.forest_ = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        ).fit(x, y)
        self.classes_ = self.forest_.classes_
        return self

    def predict(self, image: Any) -> np.ndarray:
        """uint8 labels of every voxel, slice by slice; **computes**."""
        if self.classes_ is None:
            raise RuntimeError("this ForestBaseline is not fitted: call fit() first")
        data = np.asarray(unwrap(image))
        out = np.empty(data.shape, np.uint8)
        for z in range(data.shape[0]):
            feats = self.features(data[z : z + 1])[0]
            flat = self.forest_.predict(feats.reshape(-1, feats.shape[-1]))
            out[z] = flat.reshape(data.shape[1:]).astype(np.uint8)
        return out
