"""The filter baseline keeps the candidate of highest training PSNR, in the clean scan's
grey values, and refuses what it cannot use."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

import xctdask as xd
from xctdask.metrics import FilterBaseline


def _blocks(shape=(2, 64, 64)) -> np.ndarray:
    clean = np.zeros(shape, np.float32)
    clean[:, 8:40, 10:30] = 1.0
    clean[:, 30:56, 36:60] = 2.0
    return clean


def _psnr(test, reference, data_range):
    return 10 * np.log10(data_range**2 / np.mean((test.astype(np.float64) - reference) ** 2))


def test_it_keeps_the_gaussian_a_brute_force_search_finds_best():
    clean = _blocks()
    noisy = clean + np.random.default_rng(0).normal(0, 0.4, clean.shape).astype(np.float32)
    sigmas = (0.5, 1.0, 1.5, 2.5, 4.0)
    base = FilterBaseline({"gaussian": sigmas}).fit(noisy, clean)
    brute = {}
    for s in sigmas:
        f = np.stack([ndimage.gaussian_filter(z, s) for z in noisy]).ravel().astype(np.float64)
        a, b = np.polyfit(f, clean.ravel(), 1)
        brute[s] = _psnr(a * f + b, clean.ravel(), 2.0)
    assert base.choice_ == ("gaussian", max(brute, key=brute.get))
    for s in sigmas:
        assert base.scores_["gaussian", s] == pytest.approx(brute[s], abs=1e-6)
    assert base.best_ == {"gaussian": max(brute.values())}


def test_the_median_wins_on_impulse_noise_and_the_output_is_in_clean_grey_values():
    clean = _blocks()
    rng = np.random.default_rng(1)
    noisy = 3.0 * clean + 10.0  # another scanner's grey values
    hit = rng.random(clean.shape) < 0.1
    noisy[hit] = rng.choice([0.0, 30.0], hit.sum())
    base = FilterBaseline({"gaussian": (1.0, 2.0), "median": (3, 5)}).fit(noisy, clean)
    assert base.choice_[0] == "median"
    assert base.scale_ == pytest.approx(1 / 3, rel=0.05)
    out = base.transform(noisy)
    assert out.dtype == np.float32 and out.shape == clean.shape
    assert np.median(np.abs(out - clean)) < 0.05  # mapped back, not 3·clean + 10
    assert base.best_["median"] > base.best_["gaussian"]


def test_only_the_masked_voxels_tune_it_and_dask_input_is_computed():
    clean = _blocks()
    rng = np.random.default_rng(2)
    noisy = clean + rng.normal(0, 0.3, clean.shape).astype(np.float32)
    noisy[:, 32:] = clean[:, 32:]  # the lower half is noise-free: no filter is best there
    top = np.zeros(clean.shape[1:], bool)
    top[:32] = True
    on_top = FilterBaseline({"gaussian": (0.5, 1.5)}).fit(da.from_array(noisy), clean, top)
    on_bottom = FilterBaseline({"gaussian": (0.5, 1.5)}).fit(noisy, clean, ~top)
    assert on_top.choice_ == ("gaussian", 1.5)
    assert on_bottom.choice_ == ("gaussian", 0.5)
    assert on_top.noise_ == pytest.approx(0.3, rel=0.1)


def test_non_local_means_denoises_a_flat_region():
    clean = _blocks((1, 48, 48))
    noisy = clean + np.random.default_rng(3).normal(0, 0.3, clean.shape).astype(np.float32)
    base = FilterBaseline({"nl-means": (1.0,)}).fit(noisy, clean)
    assert base.best_["nl-means"] > _psnr(noisy, clean, 2.0) + 5


def test_bad_settings_and_inputs_are_refused():
    clean = _blocks((1, 16, 16))
    with pytest.raises(ValueError, match="unknown filters"):
        FilterBaseline({"wiener": (1,)})
    with pytest.raises(ValueError, match="at least one"):
        FilterBaseline({"gaussian": ()})
    with pytest.raises(ValueError, match="shape"):
        FilterBaseline().fit(clean, clean[:, :8])
    with pytest.raises(ValueError, match="no voxels"):
        FilterBaseline().fit(clean, clean, np.zeros((16, 16), bool))
    with pytest.raises(RuntimeError, match="not fitted"):
        FilterBaseline().transform(clean)
    assert "FilterBaseline" in xd.metrics.__all__


def test_any_candidate_can_be_applied_with_its_own_grey_value_map():
    clean = _blocks((1, 32, 32))
    noisy = 2.0 * clean + np.random.default_rng(4).normal(0, 0.2, clean.shape)
    base = FilterBaseline({"gaussian": (0.5, 3.0)}).fit(noisy, clean)
    for choice in base.maps_:
        scale, offset = base.maps_[choice]
        expected = scale * ndimage.gaussian_filter(noisy[0].astype(np.float32), choice[1]) + offset
        np.testing.assert_allclose(base.transform(noisy, choice=choice)[0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="candidate"):
        base.transform(noisy, choice=("median", 3))
