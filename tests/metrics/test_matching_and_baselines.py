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


def test_zero_oc_is_the_majority_class_everywhere_as_in_table_d4():
    # the paper's proportions: 82.3 % matrix, 17.2 % fibre, 0.5 % pores; ZeroOC scores
    # the majority class's share (its IoU when everything is predicted matrix), 0 else
    truth = np.repeat(np.array([0, 1, 2], np.uint8), [8230, 1720, 50])
    image = np.random.default_rng(0).normal(size=truth.size)
    result = metrics.zero_oc(image, truth, 3)
    np.testing.assert_allclose(result.iou, [0.823, 0.0, 0.0])
    assert result.mean_iou == pytest.approx(0.823 / 3)
    prediction = np.zeros_like(truth)
    np.testing.assert_allclose(result.iou, metrics.iou(prediction, truth, 3))
    lazy = metrics.zero_oc(da.from_array(image, chunks=999), da.from_array(truth, chunks=999), 3)
    np.testing.assert_array_equal(lazy.iou, result.iou)


def test_bin_zero_oc_is_the_per_value_majority():
    image = np.array([0, 0, 0, 1, 1, 1, 2, 2], np.uint8)
    truth = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    result = metrics.bin_zero_oc(image, truth, 2)
    np.testing.assert_array_equal(result.decision, [0, 1, 1])
    prediction = result.decision[image]
    np.testing.assert_allclose(result.iou, metrics.iou(prediction, truth, 2))


def test_sixteen_bit_scans_get_one_bin_per_gray_value():
    # two classes that only a fine gray-value split separates: 256 bins over the
    # 16-bit range would merge 1000 and 1001
    image = np.array([1000, 1000, 1001, 1001, 60000], np.uint16)
    truth = np.array([0, 0, 1, 1, 1])
    hist = metrics.joint_histogram(image, truth, 2)
    assert hist.shape == (2, 59001)
    assert metrics.bin_zero_oc(image, truth, 2).mean_iou == 1.0
    assert metrics.bin_zero_oc(image, truth, 2, bins=256).mean_iou < 1.0


def test_intensity_bound_beats_every_threshold_and_bin_zero_oc():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 4000)
    image = (truth * 40 + rng.normal(0, 25, truth.size)).clip(0, 255).astype(np.uint8)
    bound = metrics.intensity_iou_bound(image, truth, 3)
    bzoc = metrics.bin_zero_oc(image, truth, 3)
    assert np.all(bound.iou >= bzoc.iou - 1e-12)
    for c in range(3):  # brute force over all one-vs-rest intervals of gray values
        best = 0.0
        for lo in range(0, 256, 4):
            for hi in range(lo, 256, 4):
                chosen = (image >= lo) & (image <= hi)
                inter = (chosen & (truth == c)).sum()
                best = max(best, inter / ((chosen | (truth == c)).sum()))
        assert bound.iou[c] >= best - 1e-12


def test_baselines_lazy_input_equals_numpy():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, (8, 9, 10)).astype(np.uint8)
    image = truth + rng.normal(0, 0.6, truth.shape)
    eager = metrics.bin_zero_oc(image, truth, 3)
    lazy = metrics.bin_zero_oc(da.from_array(image, chunks=4), da.from_array(truth, chunks=4), 3)
    np.testing.assert_array_equal(eager.iou, lazy.iou)


def test_baseline_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        metrics.bin_zero_oc(np.array([0.0, np.nan]), np.array([0, 1]), 2)
