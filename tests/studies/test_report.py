"""Table D.5 from a confusion matrix, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from xctdask.studies.report import classification_table, report


def test_the_table_matches_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 5000)
    pred = np.where(rng.random(5000) < 0.7, truth, rng.integers(0, 3, 5000))
    result = report(pred.astype(np.uint8), truth.astype(np.uint8), 3)
    table = result.numbers["table"]
    p, r, f, s = precision_recall_fscore_support(truth, pred)
    for c in range(3):
        row = table["classes"][str(c)]
        assert row["precision"] == pytest.approx(p[c]) and row["recall"] == pytest.approx(r[c])
        assert row["f1"] == pytest.approx(f[c]) and row["support"] == s[c]
        assert row["accuracy"] == pytest.approx(np.mean((pred == c) == (truth == c)))
    mp, _mr, mf, _ = precision_recall_fscore_support(truth, pred, average="macro")
    assert table["macro"]["precision"] == pytest.approx(mp)
    assert table["macro"]["f1"] == pytest.approx(mf)
    assert table["micro"]["f1"] == pytest.approx(np.mean(pred == truth))
    assert table["micro"]["accuracy"] == table["micro"]["precision"] == table["micro"]["f1"]


def test_an_absent_class_has_no_scores_and_is_left_out_of_macro():
    table = classification_table(np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]), ["a", "b", "c"])
    assert table["classes"]["c"]["recall"] is None and table["classes"]["c"]["support"] == 0
    assert table["macro"]["recall"] == pytest.approx((0.75 + 1.0) / 2)


def test_unlabelled_voxels_are_ignored_and_histograms_are_drawn():
    truth = np.array([[[0, 1, 255, 1]]], np.uint8)
    pred = np.array([[[0, 1, 0, 1]]], np.uint8)
    image = np.array([[[10, 200, 50, 210]]], np.uint8)
    result = report(pred, truth, 2, image=image, class_names=["air", "solid"])
    assert result.numbers["table"]["support"] == 3
    assert result.numbers["table"]["micro"]["accuracy"] == 1.0
    assert sorted(result.figures) == ["confusion", "histogram"]
    with pytest.raises(ValueError, match="class names"):
        report(pred, truth, 2, class_names=["a"])
    # the table is keyed by name: a repeated name dropped a class's row without a word
    with pytest.raises(ValueError, match="a repeated"):
        report(pred, truth, 2, class_names=["a", "a"])
