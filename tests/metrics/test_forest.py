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
