"""Pseudo labels clustered on the local mean (``features="mean"``): exact histogram
methods on a Gaussian average of the valid voxels, lazy, the same for any chunking and
for a sampler's region reads."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

import xctdask as xd
from xctdask.pseudolabels import PseudoLabeler
from xctdask.pseudolabels.features import halo, local_mean
from xctdask.regions import bind, describe, read_region, source_of


@pytest.fixture(scope="module")
def phantom():
    return xd.phantoms.make("fibre-composite", (16, 96, 96), seed=3)


def _inside(labels):
    return labels != 255


def test_local_mean_is_scipys_gaussian_where_every_voxel_is_valid():
    x = np.random.default_rng(0).random((8, 20, 24)).astype(np.float32)
    np.testing.assert_allclose(
        local_mean(x, (0, 1.5, 1.5)), ndimage.gaussian_filter(x, (0, 1.5, 1.5)), atol=1e-6
    )
    assert halo((0, 1.5, 1.5)) == (0, 6, 6) and halo(1) == (4, 4, 4)


def test_invalid_voxels_neither_count_nor_spread():
    x = np.ones((3, 16, 16), np.float32)
    x[:, :, :4] = 100.0  # outside a "field of view": must not leak into the inside
    x[1, 8, 8] = np.nan
    valid = np.ones(x.shape, bool)
    valid[:, :, :4] = False
    out = local_mean(x, 1.0, valid)
    np.testing.assert_allclose(out[:, :, 4:], 1.0, rtol=1e-6)  # NaN and 100s left out
    plain = ndimage.gaussian_filter(np.nan_to_num(x), 1.0)
    assert plain[0, 8, 5] > 1.5  # what an ordinary filter would have done


@pytest.mark.parametrize("method", ["kmeans", "otsu", "gmm"])
def test_identical_for_chunkings_numpy_and_every_method(phantom, method):
    vol = phantom.lq.values
    reference = np.asarray(
        PseudoLabeler(3, method, features="mean", mask="cylinder").fit_predict(vol)
    )
    for chunks in [(4, 32, 48), (3, 96, 40)]:
        labels = PseudoLabeler(3, method, features="mean", mask="cylinder").fit_predict(
            da.from_array(vol, chunks=chunks)
        )
        assert isinstance(labels, da.Array) and labels.chunks == da.from_array(vol, chunks).chunks
        np.testing.assert_array_equal(labels.compute(), reference)


def _noisy_phases(rng, shape=(12, 48, 48), sd=0.4):
    base = np.zeros(shape, np.float32)
    base[:, :, 16:32] = 1.0
    base[:, :, 32:] = 2.0
    return base, base + rng.normal(0, sd, shape).astype(np.float32)


def test_the_local_mean_takes_noise_off_the_pseudo_labels():
    truth, vol = _noisy_phases(np.random.default_rng(0))
    raw = np.asarray(PseudoLabeler(3).fit_predict(vol))
    labeler = PseudoLabeler(3, features="mean")
    smooth = np.asarray(labeler.fit_predict(vol))
    scores = [
        xd.metrics.mean_iou(lab, truth.astype(np.uint8), n_classes=3) for lab in (raw, smooth)
    ]
    assert scores[1] > scores[0] + 0.2, scores
    assert xd.pseudolabels.local_mean_sigma(xd.metrics.noise_level(vol), labeler.centers_) == 1.0


def test_auto_leaves_a_clean_scan_of_thin_structures_alone(phantom):
    vol, truth = phantom.lq.values, phantom.labels.values
    raw_labeler = PseudoLabeler(3, mask="cylinder").fit(vol)
    raw = np.asarray(raw_labeler.predict(vol))
    smooth = np.asarray(PseudoLabeler(3, features="mean", mask="cylinder").fit_predict(vol))
    inside = _inside(raw)
    assert (_inside(smooth) == inside).all()
    scores = [
        xd.metrics.mean_iou(labels[inside], truth[inside], n_classes=3) for labels in (raw, smooth)
    ]
    assert scores[0] > scores[1] + 0.05, scores  # fibres 2-3 voxels across: blurring loses
    noise = xd.metrics.noise_level(vol)
    assert xd.pseudolabels.local_mean_sigma(noise, raw_labeler.centers_) == 0.0


def test_in_plane_sigma_keeps_unrelated_slices_apart():
    rng = np.random.default_rng(2)
    vol = rng.normal(0, 0.05, (6, 32, 32)).astype(np.float32)
    vol[::2] += 1.0  # every other slice is bright: a stack of unrelated images
    in_plane = local_mean(vol, (0, 1, 1))
    for k in range(6):
        np.testing.assert_allclose(in_plane[k], local_mean(vol[k : k + 1], (0, 1, 1))[0])
    across = local_mean(vol, 1.0)
    assert abs(float(across[2].mean()) - float(vol[2].mean())) > 0.3  # a 3-D window mixes


def test_nan_voxels_stay_unlabelled_and_the_fit_only_reads(phantom, no_compute):
    vol = phantom.lq.values.copy()
    vol[3, 40:44, 40:44] = np.nan
    before = vol.copy()
    dvol = da.from_array(vol, chunks=(4, 48, 48))
    labeler = PseudoLabeler(3, features="mean").fit(dvol)
    with no_compute():
        labels = labeler.predict(dvol)
    out = labels.compute()
    assert (out[3, 40:44, 40:44] == 255).all()
    assert (out[3, 38, 38] != 255) and np.array_equal(vol, before, equal_nan=True)


@pytest.mark.parametrize("sigma", [1.0, (0.0, 1.0, 1.0)])
def test_regions_of_a_stored_scan_are_smoothed_from_a_grown_read(phantom, tmp_path, sigma):
    path = tmp_path / "lq.zarr"
    xd.save_volume(phantom.lq.chunk({"z": 5, "y": 40, "x": 64}), path)
    vol = xd.open_volume(path)
    labeler = PseudoLabeler(3, features="mean", sigma=sigma, mask="cylinder").fit(vol)
    labels = labeler.predict(vol)
    whole = labels.compute().values
    source = source_of(labels)
    assert describe({"t": source}) == {"t": "computed from the read region"}
    for region in [
        ((0, 16), (0, 96), (0, 96)),
        ((2, 9), (10, 50), (0, 30)),
        ((15, 16), (90, 96), (3, 4)),
    ]:
        part = read_region(bind({"t": source}, region), region)["t"]
        np.testing.assert_array_equal(part, whole[tuple(slice(*r) for r in region)])
    sampler = xd.PatchSampler(vol, labels, patch=(1, 32, 32), n_classes=3, seed=0)
    assert "computed from the read region" in repr(sampler)


def test_save_load_keeps_per_axis_sigma(tmp_path, phantom):
    labeler = PseudoLabeler(3, features="mean", sigma=(0, 1.5, 1.5)).fit(phantom.lq.values)
    again = PseudoLabeler.load(labeler.save(tmp_path / "pl.json"))
    assert again.sigma == (0, 1.5, 1.5)
    np.testing.assert_array_equal(
        np.asarray(again.predict(phantom.lq.values)), np.asarray(labeler.predict(phantom.lq.values))
    )


@pytest.mark.parametrize("sigma", [0, -1.0, (1, 1), (0, 0, 0), (0, -1, 1), True, "1"])
def test_bad_sigma_is_refused_before_reading(sigma):
    with pytest.raises(ValueError, match="sigma must be"):
        PseudoLabeler(3, features="mean", sigma=sigma).fit(np.zeros((2, 8, 8)))
