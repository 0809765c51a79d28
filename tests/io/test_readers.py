"""Contract tests that every lazy reader passes (the zarr StoreTests idea)."""

import pickle

import numpy as np
import pytest
import tifffile

import xctdask as xd
from xctdask.io.rawinfo import write_raw
from xctdask.io.readers import Hdf5Reader, MultiPageTiffReader, RawReader, TiffStackReader

VOLUME = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)


def _raw(tmp_path):
    path = write_raw(VOLUME, tmp_path / "v.raw")
    return RawReader(path, VOLUME.shape, VOLUME.dtype)


def _multipage(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", VOLUME)
    return MultiPageTiffReader(tmp_path / "v.tif")


def _stack(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for i, image in enumerate(VOLUME):  # names that sort wrongly as plain strings
        tifffile.imwrite(folder / f"slice_{i * 5}.tiff", image)
    return TiffStackReader(folder)


def _hdf5(tmp_path):
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("entry/data", data=VOLUME, chunks=(2, 6, 7))
    return Hdf5Reader(tmp_path / "v.h5", "entry/data")


@pytest.fixture(params=[_raw, _multipage, _stack, _hdf5], ids=["raw", "tiff", "stack", "hdf5"])
def reader(request, tmp_path):
    return request.param(tmp_path)


def test_shape_and_dtype(reader):
    assert reader.shape == VOLUME.shape
    assert reader.dtype == VOLUME.dtype
    assert reader.ndim == 3


@pytest.mark.parametrize(
    "key",
    [
        (slice(None),),
        (slice(1, 3), slice(2, 5), slice(0, 7)),
        (slice(4, 5), slice(None), slice(3, 4)),
        (2, slice(1, 4)),
        (slice(0, 5, 2),),
    ],
)
def test_regions_equal_numpy_indexing(reader, key):
    np.testing.assert_array_equal(reader[key], VOLUME[key])


def test_pickle_round_trip_reads_the_same(reader):
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone[1:3], VOLUME[1:3])


def test_token_changes_when_file_changes(reader, tmp_path):
    assert reader.token() == reader.token()


def test_stack_rejects_slices_of_other_shape(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    tifffile.imwrite(folder / "a0.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(folder / "a1.tif", np.zeros((4, 4), np.uint8))
    reader = TiffStackReader(folder)
    tifffile.imwrite(folder / "a1.tif", np.zeros((5, 4), np.uint8))  # changed after opening
    with pytest.raises(ValueError, match=r"a1\.tif has shape"):
        reader[:]
    # a cropped slice among many is refused when the stack is opened, named
    for i in range(2, 40):
        tifffile.imwrite(folder / f"a{i}.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"a1.tif has shape \(5, 4\); .*a0.tif\) has \(4, 4\)"):
        xd.open_volume(folder)


def test_stack_refuses_a_slice_of_another_type_instead_of_casting_it(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    tifffile.imwrite(folder / "a0.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(folder / "a1.tif", np.zeros((4, 4), np.uint16))
    reader = TiffStackReader(folder)
    assert reader[:1].dtype == np.uint16  # the first slice sets the type
    tifffile.imwrite(folder / "a1.tif", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"a1.tif holds float32 voxels; .* holds uint16"):
        reader[:]  # changed after opening: refused when read
    with pytest.raises(ValueError, match=r"a1.tif holds float32 voxels; .* holds uint16"):
        TiffStackReader(folder)  # when opened


def test_stack_reads_big_endian_slices(tmp_path):
    folder = tmp_path / "be"
    folder.mkdir()
    tifffile.imwrite(folder / "a0.tif", VOLUME[0].astype(">u2"), byteorder=">")
    tifffile.imwrite(folder / "a1.tif", VOLUME[1].astype(">u2"), byteorder=">")
    np.testing.assert_array_equal(TiffStackReader(folder)[:], VOLUME[:2])


def test_a_colour_tiff_is_refused_with_what_it_holds(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match=r"colour images \(TIFF axes YXS"):
        MultiPageTiffReader(tmp_path / "rgb.tif")
