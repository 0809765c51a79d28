import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from xctdask.io import open_volume, save_volume

SOURCE = np.random.default_rng(2).random((8, 12, 10)).astype(np.float32)
CHUNKS = (2, 6, 5)  # 4 × 2 × 2 = 16 chunks


class Boom(RuntimeError):
    pass


def _source(fail_block=None, calls=None):
    """SOURCE as a Dask array; one block can fail; block computations are counted."""

    def produce(block, block_info=None):
        index = block_info[0]["chunk-location"]
        if calls is not None:
            calls.append(index)
        if index == fail_block:
            raise Boom(f"simulated crash in chunk {index}")
        return block

    return da.from_array(SOURCE, chunks=CHUNKS).map_blocks(produce, dtype=SOURCE.dtype)


def test_round_trip_and_attributes(tmp_path):
    vol = open_volume(SOURCE, voxel_size=0.7, unit="um")
    result = save_volume(vol, tmp_path / "v.zarr", chunks=CHUNKS, progress=False)
    assert (result.chunks_written, result.chunks_skipped, result.levels) == (16, 0, 1)
    back = open_volume(tmp_path / "v.zarr")
    np.testing.assert_array_equal(back.values, SOURCE)
    assert back.attrs["voxel_size"] == (0.7, 0.7, 0.7)
    array = zarr.open_array(str(tmp_path / "v.zarr"))
    assert array.metadata.zarr_format == 3
    assert array.attrs["xctdask"]["complete"] is True
    assert array.compressors  # compressed


def test_existing_output_is_an_error_and_untouched(tmp_path):
    save_volume(SOURCE, tmp_path / "v.zarr", progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_volume(SOURCE * 0, tmp_path / "v.zarr", progress=False)
    np.testing.assert_array_equal(open_volume(tmp_path / "v.zarr").values, SOURCE)
    save_volume(SOURCE * 0, tmp_path / "v.zarr", overwrite=True, progress=False)
    assert open_volume(tmp_path / "v.zarr").values.max() == 0


@pytest.mark.parametrize("name", ["out.tif", "out.TIFF", "out.h5", "out.npy", "out.nii.gz"])
def test_a_store_named_like_another_format_is_refused_before_writing(tmp_path, name):
    with pytest.raises(ValueError, match=r"names a \.\w+ file, but xctdask writes Zarr"):
        save_volume(SOURCE, tmp_path / name, progress=False)
    assert not (tmp_path / name).exists()
    save_volume(SOURCE, tmp_path / "out.v1.zarr", progress=False)  # dots elsewhere are fine


def test_grey_values_saved_as_labels_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="kind='labels' needs integer class numbers"):
        save_volume(SOURCE.astype(np.float32), tmp_path / "l.zarr", kind="labels", progress=False)
    assert not (tmp_path / "l.zarr").exists()
    save_volume(SOURCE.astype(np.uint8) % 3, tmp_path / "l.zarr", kind="labels", progress=False)


def test_overwrite_never_deletes_a_non_zarr_folder(tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("data")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        save_volume(SOURCE, tmp_path / "keep", overwrite=True, progress=False)
    assert (tmp_path / "keep" / "precious.txt").exists()


def test_refuses_to_write_over_its_own_input(tmp_path):
    save_volume(SOURCE, tmp_path / "v.zarr", progress=False)
    vol = open_volume(tmp_path / "v.zarr")
    with pytest.raises(ValueError, match=r"refusing to write .*an input"):
        save_volume(vol, tmp_path / "v.zarr", overwrite=True, progress=False)


def test_interrupted_write_resumes_with_only_missing_chunks(tmp_path):
    out = tmp_path / "v.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(Boom):
        save_volume(_source(fail_block=(2, 1, 0)), out, progress=False)
    assert zarr.open_array(str(out)).attrs["xctdask"]["complete"] is False
    present = zarr.open_array(str(out)).nchunks_initialized
    assert 0 < present < 16

    calls: list = []
    with dask.config.set(scheduler="synchronous"):
        result = save_volume(_source(calls=calls), out, progress=False)
    assert result.chunks_skipped == present
    assert result.chunks_written == 16 - present
    assert len(calls) == 16 - present  # the source is not recomputed for finished chunks
    np.testing.assert_array_equal(open_volume(out).values, SOURCE)
    assert zarr.open_array(str(out)).attrs["xctdask"]["complete"] is True


def test_resume_refuses_a_different_volume(tmp_path):
    out = tmp_path / "v.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(Boom):
        save_volume(_source(fail_block=(1, 0, 0)), out, progress=False)
    with pytest.raises(FileExistsError, match="does not match"):
        save_volume(np.zeros((4, 4, 4), np.float32), out, progress=False)


def test_labels_pyramid_uses_the_mode(tmp_path):
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:2, :2, :2] = [[[1, 1], [1, 2]], [[2, 1], [3, 3]]]  # mode of this cell: 1
    labels[2:, 2:, 2:] = 7
    save_volume(labels, tmp_path / "l.zarr", multiscale=2, kind="labels", progress=False)
    level1 = open_volume(tmp_path / "l.zarr", level=1).values
    assert level1[0, 0, 0] == 1 and level1[1, 1, 1] == 7 and level1.dtype == np.uint8


@pytest.mark.parametrize(
    ("multiscale", "match"),
    [
        (2.5, "whole number of levels"),  # was written as 2 levels without a word
        ("yes", "whole number of levels"),  # was int()'s own message
        (0, "whole number of levels ≥ 1"),
        (10, "10 levels would shrink"),
    ],
)
def test_a_pyramid_that_cannot_be_written_is_refused_before_anything_is(
    tmp_path, multiscale, match
):
    with pytest.raises(ValueError, match=match):
        save_volume(SOURCE, tmp_path / "p.zarr", multiscale=multiscale, progress=False)
    assert not (tmp_path / "p.zarr").exists()


def test_save_on_a_local_cluster(tmp_path, client):
    x = da.from_array(SOURCE, chunks=CHUNKS)
    result = save_volume(x, tmp_path / "v.zarr", progress=False)
    assert result.chunks_written == 16
    np.testing.assert_array_equal(open_volume(tmp_path / "v.zarr").values, SOURCE)


def test_input_is_not_modified(tmp_path):
    source = SOURCE.copy()
    save_volume(source, tmp_path / "v.zarr", multiscale=2, progress=False)
    np.testing.assert_array_equal(source, SOURCE)


def test_ome_zarr_output_opens_in_the_ome_zarr_reader(tmp_path):
    """The reader napari's OME-Zarr plugin uses (skipped unless ome-zarr is installed)."""
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    vol = open_volume(SOURCE, voxel_size=0.5, unit="micrometer")
    save_volume(vol, tmp_path / "o.zarr", multiscale=2, progress=False)
    node = next(iter(Reader(parse_url(str(tmp_path / "o.zarr")))()))
    assert [tuple(a.shape) for a in node.data] == [(8, 12, 10), (4, 6, 5)]
    assert node.metadata["axes"][0]["unit"] == "micrometer"


def _fail(block):
    raise Boom("simulated crash in a time step")


def _series(fail_step=None):
    """A (t, z, y, x) series of three steps (one can fail), as ``Segmenter.transform``
    returns one: a DataArray with a leading ``t`` dim."""
    steps = [da.from_array(SOURCE + t, chunks=CHUNKS) for t in range(3)]
    if fail_step is not None:
        steps[fail_step] = steps[fail_step].map_blocks(_fail, dtype=SOURCE.dtype)
    return open_volume(da.stack(steps), dims=("t", "z", "y", "x"), voxel_size=0.7, unit="um")


def test_a_series_round_trips_with_its_dims_and_one_step_per_chunk(tmp_path):
    series = _series()
    result = save_volume(series, tmp_path / "s.zarr", chunks=CHUNKS, progress=False)
    assert (result.chunks_written, result.levels) == (3 * 16, 1)
    back = open_volume(tmp_path / "s.zarr")  # no dims named: the store says them
    assert back.dims == ("t", "z", "y", "x") and back.attrs["storage_chunks"] == [1, *CHUNKS]
    assert back.attrs["voxel_size"] == (0.7, 0.7, 0.7) and back.attrs["unit"] == "um"
    np.testing.assert_array_equal(back.values, series.values)
    assert zarr.open_array(str(tmp_path / "s.zarr")).metadata.dimension_names == tuple("tzyx")
    # a step of the reopened series is written with that step's chunks by default
    save_volume(back[1], tmp_path / "step.zarr", progress=False)
    assert open_volume(tmp_path / "step.zarr").attrs["storage_chunks"] == list(CHUNKS)
    np.testing.assert_array_equal(open_volume(tmp_path / "step.zarr").values, SOURCE + 1)


def test_an_interrupted_series_write_resumes(tmp_path):
    out = tmp_path / "s.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(Boom):
        save_volume(_series(fail_step=2), out, chunks=CHUNKS, progress=False)
    present = zarr.open_array(str(out)).nchunks_initialized
    assert 0 < present < 48
    result = save_volume(_series(), out, chunks=CHUNKS, progress=False)
    assert (result.chunks_skipped, result.chunks_written) == (present, 48 - present)
    np.testing.assert_array_equal(open_volume(out).values[2], SOURCE + 2)


def test_a_series_refuses_a_pyramid_and_bad_chunks_before_writing(tmp_path):
    with pytest.raises(ValueError, match="multiscale needs a 3-D volume"):
        save_volume(_series(), tmp_path / "a.zarr", multiscale=True, progress=False)
    with pytest.raises(ValueError, match=r"three positive integers \(z, y, x\) or four"):
        save_volume(_series(), tmp_path / "b.zarr", chunks=(1, 1, 2, 6, 5), progress=False)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"compression": "zip"}, "compression must be one of"),
        ({"compression_level": 99}, "compression_level must be an integer 0..9, got 99"),
        ({"compression_level": -1, "zarr_format": 2}, "compression_level must be an integer"),
    ],
)
def test_codec_settings_are_checked_before_writing(tmp_path, options, said):
    with pytest.raises(ValueError, match=said):  # blosc raised -10 mid-write for a level
        save_volume(SOURCE, tmp_path / "v.zarr", progress=False, **options)
    assert not (tmp_path / "v.zarr").exists()
