import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

from xctdask.io import open_volume, save_volume, write_raw

VOLUME = np.random.default_rng(1).integers(0, 4000, (6, 10, 12)).astype(np.uint16)


def _check(vol, expected=VOLUME):
    assert isinstance(vol, xr.DataArray)
    assert vol.dims == ("z", "y", "x")
    assert isinstance(vol.data, da.Array)
    np.testing.assert_array_equal(vol.values, expected)


def test_zarr_v3_array(tmp_path):
    z = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=VOLUME.shape,
        chunks=(2, 5, 6),
        dtype=VOLUME.dtype,
        zarr_format=3,
    )
    z[:] = VOLUME
    vol = open_volume(tmp_path / "a.zarr")
    _check(vol)
    # Dask chunks are unions of storage chunks (here the whole small volume)
    assert vol.attrs["storage_chunks"] == [2, 5, 6]
    assert vol.data.chunksize == VOLUME.shape
    assert open_volume(tmp_path / "a.zarr", chunks=(2, 5, 6)).data.chunksize == (2, 5, 6)
    budget = 2 * 10 * 12 * VOLUME.itemsize  # Dask's own knob sets the size
    with dask.config.set({"array.chunk-size": f"{budget}B"}):
        assert open_volume(tmp_path / "a.zarr").data.chunksize == (2, 10, 12)


def test_a_terabyte_store_opens_in_few_large_chunks(tmp_path):
    z = zarr.create_array(
        str(tmp_path / "big.zarr"), shape=(8192, 8192, 8192), chunks=(64, 256, 256), dtype="u2"
    )
    vol = open_volume(tmp_path / "big.zarr")
    assert z.nchunks == 131072 and vol.data.npartitions == 131072 // 16
    assert vol.data.chunksize == (64, 1024, 1024)  # 128 MiB, whole storage chunks


def test_zarr_v2_array(tmp_path):
    z = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=VOLUME.shape,
        chunks=(3, 10, 12),
        dtype=VOLUME.dtype,
        zarr_format=2,
    )
    z[:] = VOLUME
    _check(open_volume(tmp_path / "a.zarr"))


def test_zarr_group_needs_dataset_when_ambiguous(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", data=VOLUME)
    g.create_array("b", data=VOLUME)
    with pytest.raises(ValueError, match="choose one with dataset="):
        open_volume(tmp_path / "g.zarr")
    _check(open_volume(tmp_path / "g.zarr", dataset="b"))
    with pytest.raises(KeyError, match="no array 'c'"):
        open_volume(tmp_path / "g.zarr", dataset="c")


def _ome_image(path, data, axes, scale, zarr_format):
    """An OME-Zarr image as other tools write it (ome-zarr-py's default is t, c, z, y, x),
    by hand from the NGFF specification: 0.4 for Zarr v2, 0.5 for Zarr v3."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    array = group.create_array("0", shape=data.shape, chunks=(1, 1, 3, 5, 6)[-data.ndim :],
                               dtype=data.dtype)  # fmt: skip
    array[:] = data
    kinds = {"t": "time", "c": "channel"}
    ms = {
        "axes": [{"name": a, "type": kinds.get(a, "space"), **({"unit": "micrometer"}
                  if a in "zyx" else {})} for a in axes],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                      "scale": scale}]}],
    }  # fmt: skip
    if zarr_format == 3:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        group.attrs["multiscales"] = [{"version": "0.4", **ms}]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_ome_zarr_image_with_channel_and_time_axes_opens_as_a_volume(tmp_path, zarr_format):
    import xctdask as xd

    scale = [1.0, 1.0, 2.0, 0.5, 0.5]
    _ome_image(tmp_path / "one.zarr", VOLUME[None, None], "tczyx", scale, zarr_format)
    vol = open_volume(tmp_path / "one.zarr")  # the singleton t and c are left out
    _check(vol)
    assert vol.attrs["voxel_size"] == (2.0, 0.5, 0.5) and vol.attrs["unit"] == "micrometer"
    assert vol.data.chunksize == (6, 10, 12) or vol.attrs["storage_chunks"] == [3, 5, 6]
    np.testing.assert_array_equal(vol[2:5, 3:9, 1:7].values, VOLUME[2:5, 3:9, 1:7])
    # predict reads it straight from the store, as it reads a 3-D store
    net = xd.models.build("unet2d", 1, 2, depth=1, f0=2)
    np.testing.assert_array_equal(
        xd.predict(vol, net, tile=8).values, xd.predict(VOLUME, net, tile=8).values
    )
    # several time steps of one channel: a (t, z, y, x) series
    steps = np.stack([VOLUME, VOLUME[::-1]])[:, None]
    _ome_image(tmp_path / "series.zarr", steps, "tczyx", scale, zarr_format)
    series = open_volume(tmp_path / "series.zarr")
    assert series.dims == ("t", "z", "y", "x")
    np.testing.assert_array_equal(series.values, steps[:, 0])
    # several channels are not a grey-value scan
    _ome_image(tmp_path / "rgb.zarr", np.stack([VOLUME] * 3)[None], "tczyx", scale, zarr_format)
    with pytest.raises(ValueError, match=r"OME-Zarr image with 3 channels \(axes time"):
        open_volume(tmp_path / "rgb.zarr")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_ome_zarr_levels_and_voxel_size(tmp_path, zarr_format):
    vol = open_volume(VOLUME, voxel_size=(2.0, 0.5, 0.5), unit="micrometer")
    save_volume(vol, tmp_path / "o.zarr", multiscale=2, zarr_format=zarr_format, progress=False)
    level0 = open_volume(tmp_path / "o.zarr")
    _check(level0)
    assert level0.attrs["voxel_size"] == (2.0, 0.5, 0.5)
    assert level0.attrs["unit"] == "micrometer"
    assert float(level0.y[1]) == 0.5
    level1 = open_volume(tmp_path / "o.zarr", level=1)
    assert level1.shape == (3, 5, 6)
    assert level1.attrs["voxel_size"] == (4.0, 1.0, 1.0)
    expected = VOLUME.reshape(3, 2, 5, 2, 6, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(level1.values, np.rint(expected).astype(np.uint16))
    with pytest.raises(ValueError, match="level=2 is out of range"):
        open_volume(tmp_path / "o.zarr", level=2)


def test_multipage_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", VOLUME)
    _check(open_volume(tmp_path / "v.tif"))


def test_tiff_folder_natural_order(tmp_path):
    for i, image in enumerate(VOLUME):
        tifffile.imwrite(tmp_path / f"img{i * 3}.tif", image)
    _check(open_volume(tmp_path))


def test_raw_with_info_and_voxel_size(tmp_path):
    write_raw(VOLUME, tmp_path / "v.raw", voxel_size=3.0, unit="um")
    vol = open_volume(tmp_path / "v.raw", chunks=(2, 10, 12))
    _check(vol)
    assert vol.attrs["voxel_size"] == (3.0, 3.0, 3.0) and vol.attrs["unit"] == "um"
    assert vol.data.numblocks == (3, 1, 1)


def test_npy_file_opens_lazily_in_any_byte_order(tmp_path):
    """A ``.npy`` volume was refused as an unknown format; it is read through a memory
    map, one task per chunk, big-endian files included."""
    np.save(tmp_path / "v.npy", VOLUME)
    vol = open_volume(tmp_path / "v.npy", chunks=(2, 10, 12))
    _check(vol)
    assert vol.data.numblocks == (3, 1, 1) and vol.attrs["source"].endswith("v.npy")
    np.save(tmp_path / "big.npy", VOLUME.astype(VOLUME.dtype.newbyteorder(">")))
    big = open_volume(tmp_path / "big.npy")
    assert big.dtype.isnative
    np.testing.assert_array_equal(big.values, VOLUME)
    np.save(tmp_path / "slice.npy", VOLUME[0])
    assert open_volume(tmp_path / "slice.npy").shape == (1, *VOLUME.shape[1:])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy"):
        open_volume(tmp_path / "objects.npy")


def test_hdf5_single_dataset_found_and_path_required_when_ambiguous(tmp_path):
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["scan/recon"] = VOLUME
    _check(open_volume(tmp_path / "v.h5"))
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = VOLUME
        f["b"] = VOLUME
    with pytest.raises(ValueError, match="name one with dataset"):
        open_volume(tmp_path / "two.h5")
    _check(open_volume(tmp_path / "two.h5", dataset="b"))
    with pytest.raises(KeyError, match="no dataset 'c'"):
        open_volume(tmp_path / "two.h5", dataset="c")


def test_nexus_default_signal_is_followed(tmp_path):
    import h5py

    with h5py.File(tmp_path / "v.nxs", "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["signal"] = "volume"
        data["volume"] = VOLUME
        data["other"] = VOLUME * 0
    _check(open_volume(tmp_path / "v.nxs"))


def test_passthrough_numpy_dask_dataarray():
    _check(open_volume(VOLUME))
    _check(open_volume(da.from_array(VOLUME, chunks=3)))
    _check(open_volume(xr.DataArray(VOLUME, dims=("z", "y", "x"))))


def test_time_series_with_four_dims():
    series = np.zeros((2, *VOLUME.shape), np.uint16)
    vol = open_volume(series, dims=("t", "z", "y", "x"))
    assert vol.dims == ("t", "z", "y", "x")


def test_unknown_format(tmp_path):
    (tmp_path / "v.xyz").write_text("nothing")
    with pytest.raises(ValueError, match="unknown volume format"):
        open_volume(tmp_path / "v.xyz")


def test_missing_path():
    with pytest.raises(FileNotFoundError):
        open_volume("/nonexistent/volume.zarr")


def test_unreadable_store(tmp_path):
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{ not json")
    with pytest.raises(OSError, match="cannot read Zarr store"):
        open_volume(tmp_path / "bad.zarr")


@pytest.mark.parametrize("shape", [(10, 12), (2, 3, 10, 12)])
def test_wrong_dimensionality(tmp_path, shape):
    tifffile.imwrite(tmp_path / "v.tif", np.zeros(shape[-2:], np.uint8))
    with pytest.raises(ValueError, match="3-D"):
        open_volume(np.zeros(shape, np.uint8))


def test_non_numeric(tmp_path):
    with pytest.raises(TypeError, match="numeric"):
        open_volume(np.zeros((2, 2, 2), dtype="U1"))


def test_open_reads_nothing(tmp_path, no_compute):
    write_raw(VOLUME, tmp_path / "v.raw")
    with no_compute():
        vol = open_volume(tmp_path / "v.raw")
    assert vol.shape == VOLUME.shape


@pytest.mark.parametrize("voxel_size", [-1.0, 0.0, float("nan"), (1.0, 0.0, 1.0)])
def test_a_voxel_size_that_is_not_positive_and_finite_is_refused(voxel_size):
    with pytest.raises(ValueError, match="voxel_size must be positive and finite"):
        open_volume(np.zeros((2, 4, 4)), voxel_size=voxel_size)


def test_a_bad_voxel_size_in_a_files_metadata_warns_and_opens(tmp_path):
    array = zarr.create_array(tmp_path / "v.zarr", shape=(2, 4, 4), chunks=(1, 4, 4), dtype="u2")
    array.attrs.update({"voxel_size": [0.0, 0.0, 0.0], "unit": "um"})
    with pytest.warns(UserWarning, match="in the file's metadata; using 1 voxel"):
        vol = open_volume(tmp_path / "v.zarr")
    assert vol.attrs["voxel_size"] == (1.0, 1.0, 1.0) and vol.attrs["unit"] == "voxel"


@pytest.mark.parametrize(
    ("options", "error", "said"),
    [
        ({"dims": ("z", "z", "x")}, ValueError, "3 or 4 distinct names"),  # xarray warned
        ({"dims": "zyx"}, ValueError, "3 or 4 distinct names"),
        ({"voxel_size": "0.65um"}, TypeError, "give the unit with unit="),
        ({"dataset": "/entry/data"}, ValueError, "this source is a ndarray"),
    ],
)
def test_arguments_that_do_not_apply_are_refused_in_words(options, error, said):
    with pytest.raises(error, match=said):
        open_volume(VOLUME, **options)


def test_a_dataset_for_a_tiff_is_refused_not_ignored(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", VOLUME, imagej=True)
    with pytest.raises(ValueError, match=r"v\.tif is neither"):
        open_volume(tmp_path / "v.tif", dataset="/entry/data")
    _check(open_volume(tmp_path / "v.tif"))


def test_zero_chunks_are_refused_in_words():
    with pytest.raises(ValueError, match="chunks must be positive sizes"):
        open_volume(np.zeros((2, 4, 4)), chunks=(0, 4, 4))
    assert open_volume(np.zeros((2, 4, 4)), chunks=(1, -1, 2)).data.chunks[1] == (4,)


def test_a_level_of_a_source_without_levels_is_refused(tmp_path):
    save_volume(np.zeros((2, 4, 4), np.uint8), tmp_path / "v.zarr", progress=False)
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((2, 4, 4), np.uint8))
    for source in (tmp_path / "v.zarr", tmp_path / "v.tif"):
        with pytest.raises(ValueError, match=r"not a multiscale .* level=1 does not exist"):
            open_volume(source, level=1)
