"""The tile lattice and blend weights agree with MONAI's sliding window."""

from __future__ import annotations

import numpy as np
import pytest

from xctdask.inference.lattice import Lattice, axis_starts, blend_weights

monai_utils = pytest.importorskip("monai.data.utils")


@pytest.mark.parametrize("length", [1, 7, 31, 32, 33, 64, 100, 257])
@pytest.mark.parametrize("tile", [1, 16, 32, 33])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
def test_axis_starts_match_monai(length, tile, overlap):
    from monai.inferers.utils import _get_scan_interval

    size = min(tile, length)
    interval = _get_scan_interval((length,), (size,), 1, (overlap,))
    slices = monai_utils.dense_patch_slices((length,), (size,), interval)
    assert axis_starts(length, tile, overlap).tolist() == [s[0].start for s in slices]


@pytest.mark.parametrize("tile", [(16, 16), (15, 32), (8, 9, 10)])
def test_gaussian_weights_are_monai_importance_map(tile):
    expected = monai_utils.compute_importance_map(tile, mode="gaussian", sigma_scale=0.125)
    np.testing.assert_array_equal(blend_weights(tile, "gaussian"), expected.numpy())


def test_weights_positive_and_peaked():
    for blend in ("gaussian", "linear", "constant"):
        w = blend_weights((9, 12), blend)
        assert w.dtype == np.float32 and (w >= 1e-3).all()
        assert w[4, 5] == w.max()
    with pytest.raises(ValueError, match="blend"):
        blend_weights((4, 4), "cosine")


def test_weight_sum_is_the_sum_over_covering_tiles():
    lat = Lattice.build((3, 50, 41), (1, 16, 16), 0.5, "gaussian")
    brute = np.zeros((50, 41))
    for y in lat.starts[1]:
        for x in lat.starts[2]:
            brute[y : y + 16, x : x + 16] += lat.weights[0]
    got = lat.weight_sum(((0, 3), (10, 37), (5, 41)))
    assert got.shape == (1, 27, 36)
    np.testing.assert_allclose(got[0], brute[10:37, 5:41], rtol=1e-6)


def test_every_voxel_is_covered_and_tiles_fit():
    lat = Lattice.build((20, 33, 70), (8, 16, 32), 0.3, "constant")
    total = lat.weight_sum(((0, 20), (0, 33), (0, 70)))
    assert (total >= 1).all()
    for axis, starts in enumerate(lat.starts):
        assert starts.min() == 0 and starts.max() + lat.tile[axis] == lat.shape[axis]
    assert lat.n_tiles == np.prod([len(s) for s in lat.starts])


def test_volume_smaller_than_tile_shrinks_the_tile():
    lat = Lattice.build((2, 10, 100), (1, 64, 64), 0.5, "gaussian")
    assert lat.tile == (1, 10, 64)
    assert lat.starts[1].tolist() == [0]


def test_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        Lattice.build((2, 10, 10), (1, 4, 4), 1.0, "gaussian")
