"""The random-forest baseline learns from sparse labels and refuses what it cannot use."""

from __future__ import annotations

import numpy as np
import pytest

import xctdask as xd
from xctdask.metrics import ForestBaseline


def test_the_forest_beats_intensity_alone_on_a_textured_phantom():
    ds = xd.phantoms.make("fibre-composite", (6, 64, 64), seed=2)
    truth = ds.labels.values
    sparse = np.full_like(truth, 255)
    sparse[[1, 4]] = truth[[1, 4]]
    forest = ForestBaseline(n_estimators=30, seed=0).fit(ds.lq.values, sparse, 3)
    pred = forest.predict(ds.lq.values)
    test = [0, 2, 3, 5]
    miou = float(xd.metrics.mean_iou(pred[test], truth[test], n_classes=3))
    baseline = xd.metrics.bin_zero_oc(ds.lq.values[test], truth[test], 3)
    assert pred.dtype == np.uint8 and pred.shape == truth.shape
    assert miou > 0.5 and miou > baseline.mean_iou - 0.1


def test_the_forest_refuses_empty_labels_and_an_unfitted_predict():
    image = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="no labelled voxel"):
        ForestBaseline().fit(image, np.full((2, 8, 8), 255, np.uint8), 2)
    with pytest.raises(RuntimeError, match="not fitted"):
        ForestBaseline().predict(image)
    with pytest.raises(ValueError, match="shape"):
        ForestBaseline().fit(image, np.zeros((2, 8, 9), np.uint8), 2)


def test_labels_the_forest_would_leave_out_and_bad_scales_are_refused():
    image = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    labels = np.full((2, 8, 8), 255, np.uint8)
    labels[0, :4], labels[0, 4:] = 0, 4  # class 4 of 2 was dropped without a word
    with pytest.raises(ValueError, match=r"values \[4\] outside 0\.\.1"):
        ForestBaseline(n_estimators=2).fit(image, labels, 2)
    with pytest.raises(TypeError, match="labels must be integers"):
        ForestBaseline(n_estimators=2).fit(image, labels.astype(np.float32), 2)
    with pytest.raises(ValueError, match="0 < sigma_min ≤ sigma_max"):
        ForestBaseline(sigma_min=8, sigma_max=1).fit(image, np.minimum(labels, 1), 2)
