import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xctdask.backend import array_module, as_dask, check_same_shape, is_dask, validate_volume


def test_array_module_numpy_and_dask_of_numpy():
    assert array_module(np.zeros(2), da.zeros(2)) is np


def test_is_dask_sees_through_dataarray():
    assert is_dask(xr.DataArray(da.zeros((2, 2))))
    assert not is_dask(xr.DataArray(np.zeros((2, 2))))


def test_as_dask_does_not_copy_dask():
    x = da.zeros((4, 4), chunks=2)
    assert as_dask(x) is x


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_wrong_dimensionality_is_named(shape):
    with pytest.raises(ValueError, match=r"must be 3-D \(z, y, x\)"):
        validate_volume(np.zeros(shape))


@pytest.mark.parametrize("dtype", ["U3", "O", "complex64"])
def test_non_numeric_dtype_is_rejected(dtype):
    with pytest.raises(TypeError, match="real numeric dtype"):
        validate_volume(np.zeros((2, 2, 2), dtype=dtype))


def test_a_path_where_an_array_goes_says_to_open_it(tmp_path):
    import xctdask as xd

    with pytest.raises(TypeError, match=r"got str: open the file first, e.g. xd.open_volume"):
        xd.pseudo_labels("scan.zarr", 3)
    with pytest.raises(TypeError, match=r"got \w*Path: open the file first"):
        validate_volume(tmp_path / "scan.zarr")


def test_empty_volume_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        validate_volume(np.zeros((0, 2, 2)))


def test_shape_mismatch_names_both():
    with pytest.raises(ValueError, match=r"labels shape \(2, 2\) does not match volume"):
        check_same_shape(np.zeros((2, 2)), np.zeros((3, 2)), ("labels", "volume"))


def test_a_big_endian_zarr_scan_runs_like_a_native_one(tmp_path):
    # Zarr v2 stores keep the byte order they were written with (N5 and some
    # converters write big-endian); PyTorch refused such chunks in the histogram
    # pass and in predict
    import torch
    import zarr

    import xctdask as xd

    scan = xd.phantoms.make("fibre-composite", (8, 48, 48), seed=0).hq.values
    scan = np.round(scan / scan.max() * 4000).astype(np.uint16)
    store = zarr.create_array(
        tmp_path / "big.zarr", shape=scan.shape, dtype=">u2", chunks=(4, 48, 48), zarr_format=2
    )
    store[:] = scan
    big = xd.open_volume(tmp_path / "big.zarr")
    assert big.dtype == np.dtype(">u2")
    native = np.asarray(xd.pseudo_labels(scan, 3))
    np.testing.assert_array_equal(np.asarray(xd.pseudo_labels(big, 3)), native)
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=1, f0=4).eval()
    np.testing.assert_array_equal(
        xd.predict(big, net, tile=32, context=1).values,
        xd.predict(scan, net, tile=32, context=1).values,
    )
    options = dict(steps=2, steps_self_correct=1, patch=32, depth=1, f0=4, progress=False)
    seg = xd.Segmenter(3, **options).fit(big)
    assert np.isfinite(seg.history["stage2"]["loss"]).all()
    assert seg.transform(big).values.shape == scan.shape
