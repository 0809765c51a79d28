"""Multi-feature pseudo labels: exact halos, chunking-independent sample, better on noise."""

from __future__ import annotations

import dask.array as da
import numpy as np
from scipy import ndimage

import xctdask as xd
from xctdask.pseudolabels import PseudoLabeler
from xctdask.pseudolabels.features import compute_features, sample_features


def test_features_match_scipy_on_the_whole_volume():
    rng = np.random.default_rng(0)
    x = rng.random((10, 12, 14)).astype(np.float32)
    f = compute_features(x, ("intensity", "mean", "std"), 1.5)
    mean = ndimage.gaussian_filter(x, 1.5, mode="reflect")
    np.testing.assert_allclose(f[1], mean, rtol=1e-5)
    var = ndimage.gaussian_filter(x * x, 1.5, mode="reflect") - mean**2
    np.testing.assert_allclose(f[2] ** 2, np.maximum(var, 0), atol=1e-5)


def test_sample_is_the_same_for_any_chunking():
    rng = np.random.default_rng(1)
    x = rng.random((12, 20, 20)).astype(np.float32)
    tables = [
        sample_features(da.from_array(x, chunks=c), None, ("intensity", "std"), 1.0, 500, 7)
        for c in [(12, 20, 20), (4, 10, 20), (6, 5, 7)]
    ]
    assert 300 < tables[0].shape[0] < 700
    for t in tables[1:]:
        np.testing.assert_allclose(t, tables[0], rtol=1e-5, atol=1e-6)


def test_multi_feature_labels_identical_for_chunkings_and_classes_ordered():
    ds = xd.phantoms.make("fibre-composite", (12, 64, 64), seed=1)
    results = []
    for chunks in [(12, 64, 64), (4, 32, 32), (6, 64, 16)]:
        pl = PseudoLabeler(
            3, features=("intensity", "mean", "std"), sigma=1.0, mask="cylinder", n_samples=20000
        )
        labels = pl.fit_predict(da.from_array(ds.lq.values, chunks=chunks))
        assert np.all(np.diff(pl.centers_) > 0)
        results.append(labels.compute())
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    inside = results[0] != 255
    miou = xd.metrics.mean_iou(results[0][inside], ds.labels.values[inside], n_classes=3)
    assert miou > 0.5
