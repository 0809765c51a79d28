import dask.array as da
import numpy as np
import pytest

from xctdask import metrics


def test_hungarian_recovers_a_permutation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (6, 7, 8)).astype(np.uint8)
    permutation = np.array([2, 0, 1], np.uint8)
    pred = permutation[truth]
    mapping = metrics.match_labels(da.from_array(pred, chunks=3), truth, n_pred=3, n_truth=3)
    np.testing.assert_array_equal(mapping[pred], truth)


def test_extra_clusters_merge_into_their_best_class():
    truth = np.array([0] * 6 + [1] * 6)
    pred = np.array([0, 0, 0, 3, 3, 3, 1, 1, 1, 2, 2, 2])  # 4 clusters, 2 classes
    mapping = metrics.match_labels(pred, truth, n_pred=4, n_truth=2)
    np.testing.assert_array_equal(mapping, [0, 1, 1, 0])
    relabelled = metrics.apply_mapping(da.from_array(pred, chunks=5), mapping)
    np.testing.assert_array_equal(relabelled.compute(), truth)


def test_zero_oc_is_the_per_value_majority():
    image = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    truth = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    result = metrics.zero_oc(image, truth, 2, bins=3)
    np.testing.assert_array_equal(result.decision, [0, 1, 1])
    prediction = result.decision[image]
    np.testing.assert_allclose(result.iou, metrics.iou(prediction, truth, 2))


def test_bin_zero_oc_beats_every_threshold_and_zero_oc():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 4000)
    image = (truth * 40 + rng.normal(0, 25, truth.size)).clip(0, 255).astype(np.uint8)
    ceiling = metrics.bin_zero_oc(image, truth, 3)
    zoc = metrics.zero_oc(image, truth, 3)
    assert np.all(ceiling.iou >= zoc.iou - 1e-12)
    for c in range(3):  # brute force over all one-vs-rest intervals of gray values
        best = 0.0
        for lo in range(0, 256, 4):
            for hi in range(lo, 256, 4):
                chosen = (image >= lo) & (image <= hi)
                inter = (chosen & (truth == c)).sum()
                best = max(best, inter / ((chosen | (truth == c)).sum()))
        assert ceiling.iou[c] >= best - 1e-12


def test_baselines_lazy_input_equals_numpy():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, (8, 9, 10)).astype(np.uint8)
    image = truth + rng.normal(0, 0.6, truth.shape)
    eager = metrics.zero_oc(image, truth, 3)
    lazy = metrics.zero_oc(da.from_array(image, chunks=4), da.from_array(truth, chunks=4), 3)
    np.testing.assert_array_equal(eager.iou, lazy.iou)


def test_baseline_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        metrics.zero_oc(np.array([0.0, np.nan]), np.array([0, 1]), 2)
