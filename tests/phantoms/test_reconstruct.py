import dask.array as da
import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import radon

from xctdask import metrics
from xctdask.io import open_projections
from xctdask.phantoms import reconstruct


def _square_projections(center_offset=0.0):
    image = np.zeros((64, 64))
    image[20:40, 24:44] = 1.0
    theta = np.linspace(0, 180, 128, endpoint=False)
    sino = radon(image, theta, circle=True)  # (col, angle)
    if center_offset:
        sino = ndimage.shift(sino, (center_offset, 0), order=1, mode="nearest")
    return image, theta, sino.T[:, None, :]


def test_recovers_a_simple_object():
    _image, theta, proj = _square_projections()
    rec = reconstruct(proj, theta).values[0]
    assert np.abs(rec[22:38, 26:42] - 1).mean() < 0.05


def test_center_of_rotation_is_corrected():
    image, theta, proj = _square_projections(center_offset=5)
    off = reconstruct(proj, theta).values[0]
    fixed = reconstruct(proj, theta, center=32 + 5).values[0]
    assert np.abs(fixed - image).mean() < 0.5 * np.abs(off - image).mean()


def test_flat_dark_correction_inverts_beer_lambert():
    _image, theta, proj = _square_projections()
    proj = proj * 0.05  # line integrals ≤ 1: counts stay well above the clip
    flat, dark = np.full((3, 1, 64), 1000.0), np.full((2, 1, 64), 10.0)
    counts = dark[0] + (flat[0] - dark[0]) * np.exp(-proj)
    np.testing.assert_allclose(
        reconstruct(counts, theta, flats=flat, darks=dark).values,
        reconstruct(proj, theta).values,
        atol=1e-4,
    )


def test_dask_input_stays_lazy_and_equals_numpy(no_compute):
    _, theta, proj = _square_projections()
    proj2 = np.concatenate([proj, proj * 0.5], axis=1)
    with no_compute():
        lazy = reconstruct(da.from_array(proj2, chunks=(16, 1, 64)), theta)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, reconstruct(proj2, theta).values, atol=1e-6)


def test_bad_input():
    _, theta, proj = _square_projections()
    with pytest.raises(ValueError, match="angles"):
        reconstruct(proj, theta[:-1])
    with pytest.raises(ValueError, match="3-D"):
        reconstruct(proj[:, 0], theta)
    with pytest.raises(ValueError, match="angle_step"):
        reconstruct(proj, theta, angle_step=0)


def test_fields_and_angles_that_would_give_a_wrong_reconstruction(tmp_path):
    import h5py

    _, theta, proj = _square_projections()
    flat, dark = np.full((3, 1, 64), 1000.0), np.full((2, 1, 64), 10.0)
    counts = dark[0] + (flat[0] - dark[0]) * np.exp(-0.05 * proj)
    with pytest.raises(ValueError, match="are flats and darks swapped"):
        reconstruct(counts, theta, flats=dark, darks=flat)  # was clipped to a finite mess
    with pytest.raises(ValueError, match=r"flats are frames of shape \(1, 32\)"):
        reconstruct(counts, theta, flats=flat[:, :, :32], darks=dark)
    with pytest.warns(UserWarning, match=r"span only 3\.1\d* degrees; if they are radians"):
        reconstruct(proj, np.radians(theta))
    with h5py.File(tmp_path / "p.h5", "w") as f:  # a Data Exchange file, cropped flats
        f["exchange/data"], f["exchange/theta"] = counts, theta
        f["exchange/data_white"], f["exchange/data_dark"] = flat[:, :, :32], dark
    with pytest.raises(ValueError, match=r"holds flats of shape \(3, 1, 32\)"):
        open_projections(tmp_path / "p.h5")  # xarray's "conflicting sizes" before


@pytest.fixture(scope="module")
def tooth(shared_data):
    ds = open_projections(shared_data / "tooth" / "tooth.h5")
    hq = reconstruct(ds, center=295.5)
    lq = reconstruct(ds, center=295.5, angle_step=4)
    return hq.values, lq.values


def test_tooth_reconstructs_at_full_and_quarter_angles(tooth):
    hq, lq = tooth
    assert hq.shape == lq.shape == (2, 640, 640)
    assert np.isfinite(hq).all() and np.isfinite(lq).all()
    # the tooth is denser than the air around it
    yy, xx = np.mgrid[:640, :640]
    centre = np.hypot(yy - 320, xx - 320) < 100
    assert np.median(hq[0][centre]) > np.median(
        hq[0][~centre & (np.hypot(yy - 320, xx - 320) < 300)]
    )


def test_tooth_lq_is_worse_against_smoothed_hq(tooth):
    # reference: the full-angle reconstruction smoothed by a Gaussian (sigma 2 px),
    # inside the reconstruction circle
    hq, lq = tooth
    reference = ndimage.gaussian_filter(hq, sigma=(0, 2, 2))
    yy, xx = np.mgrid[:640, :640]
    disc = np.hypot(yy - 319.5, xx - 319.5) < 300
    data_range = float(reference[:, disc].max() - reference[:, disc].min())
    hq_psnr = float(metrics.psnr(hq[:, disc], reference[:, disc], data_range=data_range))
    lq_psnr = float(metrics.psnr(lq[:, disc], reference[:, disc], data_range=data_range))
    assert hq_psnr - lq_psnr > 3, (hq_psnr, lq_psnr)
