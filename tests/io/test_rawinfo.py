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
