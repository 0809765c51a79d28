"""Every real data set in ../shared/data opens with the right shape and values."""

import numpy as np
import pytest

from xctdask.io import open_projections, open_volume
from xctdask.io.rawinfo import info_path_for


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("fibers_150x150x150.tif", (150, 150, 150)),
        ("bone_128x128x128.tif", (128, 128, 128)),
        ("shell_225x128x128.tif", (225, 128, 128)),
    ],
)
def test_qim3d_tiffs(shared_data, name, shape):
    import tifffile

    vol = open_volume(shared_data / "qim3d" / name)
    assert vol.shape == shape and vol.dtype == np.uint8
    np.testing.assert_array_equal(
        vol[10:12].values, tifffile.imread(shared_data / "qim3d" / name)[10:12]
    )


def test_sand_raw_with_an_info_file(shared_data, tmp_path):
    # the data set ships without .raw.info; the raw reader needs one beside the file
    link = tmp_path / "sand.raw"
    link.symlink_to(shared_data / "sand" / "sand_200x200x100_uint8.raw")
    info_path_for(link).write_text("NUM_X = 200\nNUM_Y = 200\nNUM_Z = 100\nDATA_TYPE = uint8\n")
    vol = open_volume(link)
    expected = np.fromfile(shared_data / "sand" / "sand_200x200x100_uint8.raw", np.uint8)
    np.testing.assert_array_equal(vol.values, expected.reshape(100, 200, 200))


def test_tooth_projections(shared_data):
    ds = open_projections(shared_data / "tooth" / "tooth.h5")
    assert ds.data.shape == (181, 2, 640)
    assert ds.flats.shape == (10, 2, 640) and ds.darks.shape == (10, 2, 640)
    assert ds.angle.values[0] == 0 and 179 < ds.angle.values[-1] <= 180
