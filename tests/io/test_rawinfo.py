import numpy as np
import pytest

from xctdask.io.rawinfo import info_path_for, read_raw_info, write_raw


def test_round_trip_keeps_shape_dtype_and_voxel_size(tmp_path):
    vol = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    path = write_raw(vol, tmp_path / "v.raw", voxel_size=0.65, unit="micrometer")
    info = read_raw_info(path)
    assert info.shape == (3, 4, 5)
    assert info.dtype == np.dtype("<f4")
    assert info.voxel_size == 0.65 and info.unit == "micrometer"


def test_pyhst_info_without_dtype_infers_float32_from_size(tmp_path):
    np.zeros((2, 3, 4), np.float32).tofile(tmp_path / "v.raw")
    info_path_for(tmp_path / "v.raw").write_text(
        "! PyHST_SLAVE VOLUME INFO FILE\nNUM_X = 4\nNUM_Y = 3\nNUM_Z = 2\n"
    )
    info = read_raw_info(tmp_path / "v.raw")
    assert info.shape == (2, 3, 4) and info.dtype == np.float32


def test_size_mismatch_is_an_error(tmp_path):
    np.zeros(10, np.uint8).tofile(tmp_path / "v.raw")
    info_path_for(tmp_path / "v.raw").write_text(
        "NUM_X = 4\nNUM_Y = 3\nNUM_Z = 2\nDATA_TYPE = uint8\n"
    )
    with pytest.raises(ValueError, match="10 bytes"):
        read_raw_info(tmp_path / "v.raw")


def test_missing_info_file_is_named(tmp_path):
    np.zeros(10, np.uint8).tofile(tmp_path / "v.raw")
    with pytest.raises(FileNotFoundError, match=r"v\.raw\.info"):
        read_raw_info(tmp_path / "v.raw")


def test_write_refuses_existing(tmp_path):
    write_raw(np.zeros((1, 2, 2), np.uint8), tmp_path / "v.raw")
    with pytest.raises(FileExistsError):
        write_raw(np.zeros((1, 2, 2), np.uint8), tmp_path / "v.raw")


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("NUM_X = 0", "NUM_X = 0; it must be a whole number ≥ 1"),  # was ZeroDivisionError
        ("NUM_X = 4.5", "NUM_X = 4.5; it must be a whole number"),  # int() error, no file
        ("DATA_TYPE = uint7", "DATA_TYPE = uint7, which is not a data type"),
        ("DATA_TYPE = complex64", "not a number type"),
        ("BYTEORDER = MIDDLEFIRST", "BYTEORDER = MIDDLEFIRST; it must be LOWBYTEFIRST"),
        ("VOXEL_SIZE = 0.65um", "VOXEL_SIZE = 0.65um; it must be a positive number"),
        ("VOXEL_SIZE = -1", "VOXEL_SIZE = -1"),
    ],
)
def test_an_info_file_that_cannot_be_right_is_refused_in_its_own_words(tmp_path, entry, match):
    """A byte order other than LOWBYTEFIRST was read as big endian without a word (the
    voxels came out byte-swapped); the other entries failed with Python's messages that
    named neither the file nor the entry."""
    np.zeros(24, np.uint8).tofile(tmp_path / "v.raw")
    entries = {"NUM_X": "4", "NUM_Y": "3", "NUM_Z": "2", "DATA_TYPE": "uint8"}
    key, value = (part.strip() for part in entry.split("="))
    entries[key] = value
    if key == "NUM_X" and value == "0":
        del entries["DATA_TYPE"]  # the size then decides the type: 24 bytes / 0 voxels
    text = "\n".join(f"{k} = {v}" for k, v in entries.items())
    info_path_for(tmp_path / "v.raw").write_text(text + "\n")
    with pytest.raises(ValueError, match=match) as error:
        read_raw_info(tmp_path / "v.raw")
    assert "v.raw.info" in str(error.value)


def test_a_big_endian_volume_reads_back_its_values(tmp_path):
    values = np.arange(24, dtype=">u2").reshape(2, 3, 4)
    values.tofile(tmp_path / "v.raw")
    info_path_for(tmp_path / "v.raw").write_text(
        "NUM_X = 4\nNUM_Y = 3\nNUM_Z = 2\nDATA_TYPE = uint16\nBYTEORDER = HIGHBYTEFIRST\n"
    )
    info = read_raw_info(tmp_path / "v.raw")
    assert info.dtype == np.dtype(">u2")
    read = np.fromfile(tmp_path / "v.raw", dtype=info.dtype).reshape(info.shape)
    np.testing.assert_array_equal(read, np.arange(24).reshape(2, 3, 4))
