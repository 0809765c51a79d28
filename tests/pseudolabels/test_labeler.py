"""PseudoLabeler and pseudo_labels: laziness, chunking, masks, errors, persistence."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xctdask as xd
from xctdask.pseudolabels import PseudoLabeler, pseudo_labels


@pytest.fixture(scope="module")
def phantom():
    return xd.phantoms.make("fibre-composite", (16, 96, 96), seed=3)


def _three_phase(rng, shape=(12, 32, 32), sd=0.05):
    base = np.zeros(shape, np.float32)
    base[:, :, 11:22] = 0.5
    base[:, :, 22:] = 1.0
    return base + rng.normal(0, sd, shape).astype(np.float32)


class _CountingScheduler:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return dask.get(*args, **kwargs)


@pytest.mark.parametrize("method", ["kmeans", "otsu", "gmm"])
def test_identical_for_three_chunkings(phantom, method):
    vol = phantom.lq.values
    results = []
    for chunks in [(16, 96, 96), (4, 32, 48), (5, 17, 96)]:
        labels = pseudo_labels(da.from_array(vol, chunks=chunks), 3, method, mask="cylinder")
        assert labels.chunks == da.from_array(vol, chunks=chunks).chunks
        results.append(labels.compute())
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_uint16_volume_identical_for_three_chunkings(phantom):
    vol = (phantom.hq.values.clip(0, 3) * 20000).astype(np.uint16)
    results = [
        pseudo_labels(da.from_array(vol, chunks=c), 3).compute()
        for c in [(16, 96, 96), (3, 40, 40), (16, 7, 96)]
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_only_the_histogram_pass_computes(no_compute):
    rng = np.random.default_rng(0)
    vol = da.from_array(_three_phase(rng), chunks=(4, 16, 16))
    counting = _CountingScheduler()
    with dask.config.set(scheduler=counting):
        labels = pseudo_labels(vol, 3)
    assert counting.calls == 1  # the documented histogram pass, nothing else
    assert isinstance(labels, da.Array)
    labeler = PseudoLabeler(3).fit(vol)
    with no_compute():
        again = labeler.predict(vol)
    np.testing.assert_array_equal(again.compute(), labels.compute())


def test_classes_follow_intensity_and_labels_are_right():
    rng = np.random.default_rng(1)
    vol = _three_phase(rng)
    truth = np.zeros(vol.shape, np.uint8)
    truth[:, :, 11:22], truth[:, :, 22:] = 1, 2
    for method in ("kmeans", "otsu", "gmm"):
        pl = PseudoLabeler(3, method).fit(vol)
        assert np.all(np.diff(pl.centers_) > 0)
        np.testing.assert_array_equal(pl.predict(vol), truth)


def test_phantom_pseudo_labels_are_good(phantom):
    truth = phantom.labels.values
    labels = pseudo_labels(phantom.hq.chunk({"z": 4}), 3, mask="cylinder").values
    inside = labels != 255
    assert inside.mean() > 0.7  # the field of view is most of the slice
    assert xd.metrics.mean_iou(labels[inside], truth[inside], n_classes=3) > 0.9


def test_dataarray_in_dataarray_out(phantom):
    vol = phantom.hq.chunk({"z": 8})
    vol.attrs["unit"] = "micrometer"
    labels = pseudo_labels(vol, 3)
    assert isinstance(labels, xr.DataArray) and labels.dims == vol.dims
    assert labels.attrs["unit"] == "micrometer"
    assert labels.attrs["xctdask"]["pseudo_labels"]["n_classes"] == 3
    assert labels.dtype == np.uint8


def test_nan_and_masked_voxels_are_unlabelled_and_input_untouched():
    rng = np.random.default_rng(2)
    vol = _three_phase(rng)
    vol[0, 10, 0], vol[1, 1, 1] = np.nan, np.inf  # one inside the mask, one outside
    before = vol.copy()
    mask = np.ones(vol.shape[1:], bool)
    mask[:4] = False
    pl = PseudoLabeler(3, mask=mask).fit(da.from_array(vol, chunks=4))
    labels = pl.predict(da.from_array(vol, chunks=4)).compute()
    assert labels[0, 10, 0] == 255 and labels[1, 1, 1] == 255
    assert np.all(labels[:, :4] == 255)
    assert pl.n_nonfinite_ == 2 and pl.n_excluded_ == vol.shape[0] * 4 * vol.shape[2] - 1
    np.testing.assert_array_equal(vol, before)


def test_cylinder_mask_is_reused_for_another_volume_lazily(phantom, no_compute):
    pl = PseudoLabeler(3, mask="cylinder").fit(phantom.hq.chunk({"z": 8}))
    fov = pl.field_of_view_
    assert fov.outside_value == 0.0
    assert abs(fov.center_y - 47.5) < 1 and abs(fov.center_x - 47.5) < 1
    with no_compute():
        labels = pl.predict(phantom.lq.chunk({"z": 8}))
    outside = ~fov.inside(np.arange(96), np.arange(96))
    assert np.all(labels.values[:, outside] == 255)


def test_auto_finds_the_number_of_phases():
    rng = np.random.default_rng(4)
    for k in (2, 3, 4):
        x = np.concatenate([rng.normal(6 * i, 1, 20000) for i in range(k)])
        pl = PseudoLabeler("auto").fit(x.reshape(1, 1, -1))
        assert pl.n_classes_ == k, pl.k_scores_
    pl = PseudoLabeler("auto", "gmm", auto_criterion="bic", max_classes=4)
    pl.fit(x.reshape(1, 1, -1))
    assert set(pl.k_scores_) == {2, 3, 4} and pl.n_classes_ in (2, 3, 4)


def test_save_load_round_trip(tmp_path, phantom):
    vol = phantom.lq.chunk({"z": 8})
    for method in ("kmeans", "otsu", "gmm"):
        pl = PseudoLabeler(3, method, mask="cylinder").fit(vol)
        path = pl.save(tmp_path / f"{method}.json")
        loaded = PseudoLabeler.load(path)
        np.testing.assert_array_equal(loaded.predict(vol).values, pl.predict(vol).values)
        assert loaded.summary() == pl.summary()
    with pytest.raises(FileExistsError):
        pl.save(path)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        PseudoLabeler.load(tmp_path / "junk.json")


@pytest.mark.parametrize("n", [1, 0, 256, -3])
def test_bad_class_counts(n):
    with pytest.raises(ValueError, match=r"2\.\.255"):
        pseudo_labels(np.zeros((2, 4, 4)), n)
    with pytest.raises(TypeError):
        pseudo_labels(np.zeros((2, 4, 4)), 2.5)


def test_bad_volumes_and_masks():
    with pytest.raises(ValueError, match="constant"):
        pseudo_labels(da.full((4, 8, 8), 7.0, chunks=2), 3)
    with pytest.raises(ValueError, match="no finite voxel"):
        pseudo_labels(da.full((4, 8, 8), np.nan, chunks=2), 3)
    with pytest.raises(ValueError, match="mask shape"):
        pseudo_labels(np.random.default_rng(0).random((4, 8, 8)), 2, mask=np.ones((3, 8), bool))
    with pytest.raises(TypeError, match="boolean"):
        pseudo_labels(np.random.default_rng(0).random((4, 8, 8)), 2, mask=np.ones((8, 8)))
    with pytest.raises(ValueError, match="3-D"):
        pseudo_labels(np.zeros((8, 8)), 2)
    with pytest.raises(TypeError, match="numeric"):
        pseudo_labels(np.zeros((2, 2, 2), dtype=complex), 2)
    with pytest.raises(ValueError, match="distinct"):
        pseudo_labels(np.array([0, 1, 0, 1], np.uint8).reshape(1, 2, 2), 3)


@pytest.mark.parametrize("sigma", [2.0, (0, 1, 1)])
def test_a_scale_without_a_feature_that_uses_it_is_refused(sigma):
    with pytest.raises(ValueError, match=r"sigma must go with the 'mean' or 'std' features"):
        PseudoLabeler(2, sigma=sigma).validate()  # was ignored: grey values have no scale
    PseudoLabeler(2, features="mean", sigma=sigma).validate()
    with pytest.raises(ValueError, match="method"):
        pseudo_labels(np.zeros((2, 2, 2)), 2, method="dbscan")
    with pytest.raises(RuntimeError, match="not fitted"):
        PseudoLabeler(2).predict(np.zeros((2, 2, 2)))


def test_on_a_local_cluster_from_a_zarr_store(client, tmp_path, phantom):
    src = tmp_path / "lq.zarr"
    xd.save_volume(phantom.lq.chunk({"z": 4}), src)
    vol = xd.open_volume(src)
    labels = pseudo_labels(vol, 3, mask="cylinder")
    out = xd.save_volume(labels, tmp_path / "labels.zarr", kind="labels")
    assert out.chunks_written > 0
    reference = dask.compute(
        pseudo_labels(phantom.lq.chunk({"z": 8}), 3, mask="cylinder").data, scheduler="threads"
    )[0]
    np.testing.assert_array_equal(xd.open_volume(tmp_path / "labels.zarr").values, reference)


def test_real_ct_labels_match_scikit_image_otsu(shared_data):
    import tifffile
    from skimage.filters import threshold_multiotsu

    image = tifffile.imread(shared_data / "qim3d" / "shell_225x128x128.tif")
    labels = pseudo_labels(da.from_array(image, chunks=(50, 64, 64)), 3, method="otsu").compute()
    thresholds = threshold_multiotsu(image, classes=3)
    # scikit-image puts a voxel equal to a threshold in the upper class; we keep it in
    # the lower one, as in the partition the thresholds optimise
    np.testing.assert_array_equal(labels, np.searchsorted(thresholds, image, side="left"))


@pytest.mark.gpu
def test_cupy_chunks_stay_on_the_gpu():
    cp = pytest.importorskip("cupy")
    try:
        cp.zeros(1)
    except Exception:  # pragma: no cover - no usable device
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(5)
    host = _three_phase(rng, (16, 64, 64))
    device = da.from_array(cp.asarray(host), chunks=(4, 32, 32), asarray=False)
    for method in ("kmeans", "otsu", "gmm"):
        on_gpu = pseudo_labels(device, 3, method)
        assert type(on_gpu._meta).__module__.startswith("cupy")
        result = on_gpu.compute()
        assert isinstance(result, cp.ndarray)
        np.testing.assert_array_equal(
            result.get(), pseudo_labels(da.from_array(host, chunks=(4, 32, 32)), 3, method)
        )
