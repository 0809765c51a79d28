"""The 1-D fits against scikit-learn and scikit-image, and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage.filters import threshold_multiotsu
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from xctdask.pseudolabels import (
    decision_intervals,
    gmm_1d,
    intensity_histogram,
    kmeans_1d,
    multiotsu_thresholds,
    optimal_partition,
)


def _mixture(rng, means, sd, sizes):
    return np.concatenate([rng.normal(m, sd, n) for m, n in zip(means, sizes, strict=True)])


def _brute_force(centers, weights, k):
    keep = np.flatnonzero(weights > 0)
    best, arg = np.inf, None
    for cut in itertools.combinations(range(1, keep.size), k - 1):
        edges = (0, *cut, keep.size)
        cost = 0.0
        for a, b in itertools.pairwise(edges):
            c, w = centers[keep[a:b]], weights[keep[a:b]]
            cost += (w * (c - (w * c).sum() / w.sum()) ** 2).sum()
        if cost < best - 1e-12:
            best, arg = cost, keep[np.array(cut) - 1]
    return arg


def test_partition_is_the_exact_optimum_on_small_histograms():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(4, 13))
        k = int(rng.integers(2, 5))
        centers = np.sort(rng.normal(size=n))
        weights = rng.integers(0, 6, n).astype(float)
        if np.count_nonzero(weights) < k:
            continue
        np.testing.assert_array_equal(
            optimal_partition(centers, weights, k), _brute_force(centers, weights, k)
        )
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_multiotsu_equals_scikit_image_on_the_same_histogram(classes):
    rng = np.random.default_rng(classes)
    x = _mixture(rng, rng.uniform(0, 10, classes), 0.6, rng.integers(2000, 9000, classes))
    counts, edges = np.histogram(x, bins=256)
    centers = (edges[1:] + edges[:-1]) / 2
    ours = multiotsu_thresholds(centers, counts, classes)
    theirs = threshold_multiotsu(hist=(counts, centers), classes=classes)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["bone_128x128x128.tif", "shell_225x128x128.tif"])
def test_multiotsu_equals_scikit_image_on_real_ct(shared_data, name):
    import tifffile

    image = tifffile.imread(shared_data / "qim3d" / name)
    hist = intensity_histogram(image)  # exact: one bin per gray value
    for classes in (2, 3):
        ours = multiotsu_thresholds(hist.centers, hist.counts, classes)
        np.testing.assert_array_equal(ours, threshold_multiotsu(image, classes=classes))


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("separation", [1.2, 4.0])
def test_kmeans_matches_scikit_learn_and_is_never_worse(k, separation):
    rng = np.random.default_rng(10 + k)
    x = _mixture(rng, np.arange(k) * separation, 0.5, rng.integers(1000, 4000, k))
    x = x.astype(np.float32)
    hist = intensity_histogram(x[None, None])
    centroids, thresholds, _ = kmeans_1d(hist.centers, hist.counts, k)
    sk = KMeans(k, n_init=10, random_state=0).fit(x[:, None].astype(np.float64))
    if separation > 3:  # a well-posed problem: one optimum, found by both
        np.testing.assert_allclose(
            centroids, np.sort(sk.cluster_centers_[:, 0]), atol=hist.bin_width
        )
    # inertia of our labels on the voxels themselves, not on the bins
    labels = np.searchsorted(thresholds, x, side="left")
    ours = sum(((x[labels == i] - x[labels == i].mean()) ** 2).sum() for i in range(k))
    assert ours <= sk.inertia_ * (1 + 1e-6)


def test_kmeans_inertia_is_exact_on_integer_data():
    rng = np.random.default_rng(0)
    x = np.clip(_mixture(rng, [40, 90, 200], 15, [5000, 3000, 2000]), 0, 255).astype(np.uint8)
    hist = intensity_histogram(x[None, None])
    _, thresholds, inertia = kmeans_1d(hist.centers, hist.counts, 3)
    labels = np.searchsorted(thresholds, x, side="left")
    direct = sum(((x[labels == i] - x[labels == i].mean()) ** 2).sum() for i in range(3))
    assert inertia == pytest.approx(direct, rel=1e-9)
    sk = KMeans(3, n_init=10, random_state=0).fit(x[:, None].astype(np.float64))
    assert inertia <= sk.inertia_ * (1 + 1e-9)


def test_gmm_means_close_to_scikit_learn():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [rng.normal(0, 1.0, 30000), rng.normal(4, 0.5, 10000), rng.normal(7, 1.5, 20000)]
    )
    hist = intensity_histogram(x[None, None])
    ours = gmm_1d(hist.centers, hist.counts, 3)
    sk = GaussianMixture(3, random_state=0, n_init=3, tol=1e-9, max_iter=5000).fit(x[:, None])
    order = np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(ours.means, sk.means_[order, 0], atol=0.02)
    np.testing.assert_allclose(ours.variances, sk.covariances_[order, 0, 0], rtol=0.03)
    np.testing.assert_allclose(ours.weights, sk.weights_[order], atol=0.01)
    assert ours.converged


def test_decision_intervals_follow_the_most_probable_component():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 3.0, 20000), rng.normal(2, 0.3, 20000)])
    hist = intensity_histogram(x[None, None])
    model = gmm_1d(hist.centers, hist.counts, 2)
    breakpoints, labels = decision_intervals(model)
    # the wide component wins both tails: it owns two intervals
    assert labels.tolist() == [0, 1, 0]
    probe = np.linspace(-15, 15, 10001)
    want = model.log_joint(probe).argmax(axis=1)
    got = labels[np.searchsorted(breakpoints, probe, side="left")]
    assert np.mean(got == want) == 1.0


def test_too_few_values_for_k():
    with pytest.raises(ValueError, match="only 2 non-empty bins"):
        kmeans_1d(np.arange(3.0), np.array([1, 0, 1]), 3)
