"""Field-of-view detection on reconstructions."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from xctdask.pseudolabels import FieldOfView, cylinder_mask, find_field_of_view


def test_finds_the_circle_of_an_iradon_reconstruction():
    from skimage.transform import iradon, radon

    image = np.zeros((64, 64))
    image[20:40, 25:45] = 1.0
    theta = np.linspace(0, 180, 90, endpoint=False)
    recon = iradon(radon(image, theta, circle=True), theta, circle=True)
    vol = da.from_array(np.repeat(recon[None], 6, axis=0), chunks=(2, 32, 32))
    fov = find_field_of_view(vol)
    assert fov.outside_value == 0.0
    assert abs(fov.center_y - 31.5) <= 1 and abs(fov.center_x - 31.5) <= 1
    assert 29 <= fov.radius <= 33
    inside = fov.inside(np.arange(64), np.arange(64))
    assert np.all(recon[~inside] == 0)


def test_an_offset_circle_is_found():
    yy, xx = np.mgrid[:50, :60]
    plane = np.where((yy - 20) ** 2 + (xx - 35) ** 2 <= 15**2, 1.0 + yy * 0.01, -1.0)
    fov = find_field_of_view(plane[None])
    assert (fov.center_y, fov.center_x, fov.radius) == (20.0, 35.0, 15.0)


def test_no_constant_exterior_masks_nothing_with_a_warning():
    vol = np.random.default_rng(0).random((3, 20, 30))
    with pytest.warns(UserWarning, match="nothing is masked"):
        fov = find_field_of_view(vol)
    assert fov.everything and fov.outside_value is None
    assert fov.inside(np.arange(20), np.arange(30)).all()


def test_a_nan_exterior_is_a_field_of_view_not_a_warning():
    yy, xx = np.mgrid[:40, :40]
    outside = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 > 18**2
    vol = np.where(outside, np.nan, np.random.default_rng(0).random((3, 40, 40)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it used to warn "the corners differ ([nan, …])"
        fov = find_field_of_view(vol)
    assert np.isnan(fov.outside_value) and not fov.everything
    np.testing.assert_array_equal(fov.inside(np.arange(40), np.arange(40)), ~outside)
    assert find_field_of_view(np.full((2, 6, 6), np.nan)).everything  # nothing finite


def test_a_constant_slice_has_no_field_of_view():
    assert find_field_of_view(np.full((3, 8, 8), 7.0, np.float32)).everything


def test_lazy_mask_matches_the_circle_for_any_chunking():
    fov = FieldOfView(10.2, 12.7, 8.3)
    want = np.broadcast_to(fov.inside(np.arange(25), np.arange(30)), (4, 25, 30))
    for chunks in [(4, 25, 30), (1, 7, 11)]:
        mask = cylinder_mask((4, 25, 30), chunks, fov)
        assert mask.chunks == da.core.normalize_chunks(chunks, (4, 25, 30))
        np.testing.assert_array_equal(mask.compute(), want)
