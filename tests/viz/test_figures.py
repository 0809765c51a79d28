"""montage, histogram, confusion: what is drawn follows the data; PNGs are written."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import xctdask as xd
from xctdask.viz import confusion, histogram, montage


def test_montage_overlays_leave_unlabelled_voxels_clear(tmp_path):
    img = np.random.default_rng(0).normal(size=(10, 12, 14)).astype(np.float32)
    labels = (img > 0).astype(np.uint8)
    labels[:, :3] = 255
    path = tmp_path / "m.png"
    fig = montage(da.from_array(img, chunks=5), labels, slices=(2, 7), titles=("a", "b"), path=path)
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "b"
    overlay = fig.axes[1].get_images()[1].get_array()
    assert (overlay[:3, :, 3] == 0).all() and (overlay[3:, :, 3] > 0).all()
    np.testing.assert_allclose(fig.axes[2].get_images()[0].get_array(), img[7])
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="overlay shape"):
        montage(img, labels[:5])
    with pytest.raises(ValueError, match="3-D"):
        montage(img[0])


def test_histogram_marks_the_thresholds(tmp_path):
    vol = np.concatenate([np.zeros(2000), np.ones(2000) * 5]).reshape(4, 25, 40)
    vol = vol + np.random.default_rng(0).normal(0, 0.3, vol.shape)
    labeler = xd.PseudoLabeler(2, "otsu").fit(vol.astype(np.float32))
    fig = histogram(labeler, path=tmp_path / "h.png")
    vertical = [line.get_xdata()[0] for line in fig.axes[0].get_lines()]
    assert any(abs(v - float(labeler.thresholds_[0])) < 1e-9 for v in vertical)
    with pytest.raises(ValueError, match="not fitted"):
        histogram(xd.PseudoLabeler(2))
    with pytest.raises(TypeError, match=r"got ndarray: for a volume, plot histogram\(xd"):
        histogram(vol)  # a volume is not a labeler (it was called "not fitted")


def test_confusion_rows_are_normalised():
    fig = confusion(np.array([[8, 2], [0, 5]]), class_names=["a", "b"])
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2], [0, 1]])
    with pytest.raises(ValueError, match="2-D"):
        confusion(np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="names"):
        confusion(np.eye(2), class_names=["a"])


def test_confusion_draws_non_square_matrices_normalised_each_way():
    """Pseudo clusters (rows) against final classes (columns): 4 × 3."""
    matrix = np.array([[6, 0, 2], [0, 3, 0], [1, 1, 0], [0, 0, 0]])
    for how, expected in [
        ("row", matrix / np.maximum(matrix.sum(1, keepdims=True), 1)),
        ("column", matrix / matrix.sum(0, keepdims=True)),
        ("all", matrix / matrix.sum()),
    ]:
        fig = confusion(matrix, normalize=how, ylabel="cluster K", xlabel="class C")
        shown = fig.axes[0].get_images()[0].get_array()
        np.testing.assert_allclose(shown, expected)
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]
        assert fig.axes[0].get_ylabel() == "cluster K"
    with pytest.raises(ValueError, match="normalize"):
        confusion(matrix, normalize="diagonal")
    with pytest.raises(ValueError, match="column names"):
        confusion(matrix, column_names=["a"])
