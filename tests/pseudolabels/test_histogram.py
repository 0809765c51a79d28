"""The histogram pass: exact, chunking-independent, NaN-aware, lazy until asked."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from xctdask.pseudolabels import intensity_histogram


def test_float_histogram_equals_numpy_on_the_same_edges_for_any_chunking():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.1, (24, 40, 36)).astype(np.float32)
    x[0, 0, 0], x[3, 2, 1], x[5, 5, 5] = np.nan, np.inf, -np.inf
    ref = intensity_histogram(x)
    assert ref.n_nonfinite == 3 and ref.total == x.size - 3
    assert 8192 <= ref.counts.size <= 2 * 8192 + 1
    np.testing.assert_array_equal(np.histogram(x[np.isfinite(x)], bins=ref.edges)[0], ref.counts)
    for chunks in [(24, 40, 36), (5, 7, 11), (1, 40, 9)]:
        h = intensity_histogram(da.from_array(x, chunks=chunks))
        np.testing.assert_array_equal(h.counts, ref.counts)
        np.testing.assert_array_equal(h.edges, ref.edges)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int8, bool])
def test_small_integers_get_one_bin_per_gray_value(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if dtype is not bool else None
    lo, hi = (0, 2) if info is None else (max(info.min, -3000), min(info.max, 3000) + 1)
    x = rng.integers(lo, hi, (6, 20, 20)).astype(dtype)
    h = intensity_histogram(da.from_array(x, chunks=(2, 7, 20)))
    assert h.exact
    values = x.astype(np.int64).ravel()
    np.testing.assert_array_equal(h.centers, np.arange(values.min(), values.max() + 1))
    np.testing.assert_array_equal(h.counts, np.bincount(values - values.min()))


def test_mask_excludes_and_counts():
    x = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    mask = x < 10
    h = intensity_histogram(da.from_array(x, chunks=2), mask=da.from_array(mask, chunks=2))
    assert h.total == 10 and h.n_excluded == 54 and h.vmax == 9


def test_outliers_trigger_a_robust_second_pass():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (8, 64, 64)).astype(np.float32)
    x[0, 0, :3] = 1e7
    with pytest.warns(RuntimeWarning, match="robust range"):
        h = intensity_histogram(da.from_array(x, chunks=(4, 32, 32)))
    assert 3 <= h.n_clipped < 0.001 * x.size and h.vmax == 1e7
    assert h.counts.size >= 1024  # the bulk is resolved again


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_wide_integers_with_few_values_keep_one_bin_per_value_without_a_warning(dtype):
    x = np.random.default_rng(0).integers(0, 1000, (4, 20, 20)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "outliers stretch the range" for a plain range
        h = intensity_histogram(da.from_array(x, chunks=(2, 20, 20)))
    assert h.bin_width == 1 and h.n_clipped == 0
    np.testing.assert_array_equal(h.counts, np.bincount(x.ravel())[x.min() :])


def test_all_nan_is_an_error():
    with pytest.raises(ValueError, match="no finite voxel"):
        intensity_histogram(da.full((4, 4, 4), np.nan, chunks=2))


def test_float64_and_negative_values():
    x = np.linspace(-5e3, -4e3, 1000).reshape(10, 10, 10)
    h = intensity_histogram(da.from_array(x, chunks=3))
    assert h.total == 1000 and h.edges[0] <= -5e3 and h.edges[-1] >= -4e3
    np.testing.assert_array_equal(np.histogram(x, bins=h.edges)[0], h.counts)
