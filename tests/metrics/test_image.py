import dask.array as da
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xctdask import metrics

RNG = np.random.default_rng(4)
REF = RNG.random((14, 16, 15))
TEST = REF + 0.2 * RNG.standard_normal(REF.shape)


def test_psnr_equals_skimage():
    expected = peak_signal_noise_ratio(REF, TEST, data_range=REF.max() - REF.min())
    assert float(metrics.psnr(TEST, REF)) == pytest.approx(expected, rel=1e-12)
    lazy = metrics.psnr(da.from_array(TEST, chunks=5), da.from_array(REF, chunks=7))
    assert float(lazy.compute()) == pytest.approx(expected, rel=1e-12)


def test_psnr_scores_where_the_reference_is_finite():
    rng = np.random.default_rng(3)
    ref = rng.random((6, 20, 20))
    test = ref + rng.normal(0, 0.05, ref.shape)
    outside = np.zeros(ref.shape, bool)
    outside[:, :4] = True  # a NaN exterior, in the reference and in the output
    ref_nan, test_nan = np.where(outside, np.nan, ref), np.where(outside, np.nan, test)
    inside = ~outside
    expected = peak_signal_noise_ratio(
        ref[inside], test[inside], data_range=ref[inside].max() - ref[inside].min()
    )
    assert float(metrics.psnr(test_nan, ref_nan)) == pytest.approx(expected)
    lazy = metrics.psnr(da.from_array(test_nan, chunks=3), da.from_array(ref_nan, chunks=3))
    assert float(lazy.compute()) == pytest.approx(expected)
    hole = test.copy()
    hole[0, 10, 10] = np.nan  # undefined where the reference is finite: NaN, not a score
    assert np.isnan(float(metrics.psnr(hole, ref)))


@pytest.mark.parametrize("chunks", [(14, 16, 15), (5, 8, 7), (3, 4, 15), (7, 16, 5)])
def test_ssim_equals_skimage_for_any_chunking(chunks):
    expected = structural_similarity(TEST, REF, data_range=1.0)
    value = metrics.ssim(
        da.from_array(TEST, chunks=chunks), da.from_array(REF, chunks=chunks), data_range=1.0
    )
    assert float(value.compute()) == pytest.approx(expected, abs=1e-12)


def test_ssim_leaves_out_windows_that_hold_nan():
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(5)
    ref = rng.random((12, 20, 20))
    test = ref + 0.1 * rng.standard_normal(ref.shape)
    outside = np.zeros(ref.shape, bool)
    outside[:, :, :5] = True  # a NaN exterior in both, as a denoised output has
    ref_nan, test_nan = np.where(outside, np.nan, ref), np.where(outside, np.nan, test)
    r = ref[~outside].max() - ref[~outside].min()
    _, full = structural_similarity(
        np.where(outside, 0, test), np.where(outside, 0, ref), data_range=r, win_size=7, full=True
    )
    clean_window = uniform_filter(outside.astype(float), 7) < 0.5 / 7**3  # no NaN in it
    crop = (slice(3, -3),) * 3
    expected = full[crop][clean_window[crop]].mean()
    assert float(metrics.ssim(test_nan, ref_nan)) == pytest.approx(expected, rel=1e-9)
    lazy = metrics.ssim(da.from_array(test_nan, chunks=6), da.from_array(ref_nan, chunks=6))
    assert float(lazy.compute()) == pytest.approx(expected, rel=1e-9)
    hole = test.copy()
    hole[6, 10, 10] = np.nan  # undefined where the reference is finite: NaN, not a score
    assert np.isnan(float(metrics.ssim(hole, ref)))


def test_ssim_default_range_and_numpy():
    expected = structural_similarity(TEST, REF, data_range=REF.max() - REF.min())
    assert float(metrics.ssim(TEST, REF)) == pytest.approx(expected, abs=1e-12)


def test_ssim_on_a_cluster(client):
    expected = structural_similarity(TEST, REF, data_range=1.0)
    value = metrics.ssim(
        da.from_array(TEST, chunks=6), da.from_array(REF, chunks=6), data_range=1.0
    )
    assert client.compute(value).result() == pytest.approx(expected, abs=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="does not match"):
        metrics.psnr(TEST[1:], REF)
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(TEST, REF, win_size=4)
    with pytest.raises(ValueError, match="3-D"):
        metrics.ssim(TEST[0], REF[0])
    flat = np.ones_like(REF)
    with pytest.raises(ValueError, match=r"reference is constant.*data_range="):
        metrics.psnr(TEST, flat)  # was -inf dB, silently
    assert np.isfinite(metrics.psnr(TEST, flat, data_range=1.0))


def test_noise_level_finds_the_noise_under_structure_and_follows_normalisation():
    rng = np.random.default_rng(0)
    _, yy, xx = np.mgrid[0:6, 0:128, 0:128]
    structure = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 40**2, 5.0, 1.0) + 0.01 * xx
    for sigma in (0.05, 0.2, 0.8):
        noisy = structure + rng.normal(0, sigma, structure.shape)
        assert metrics.noise_level(noisy) == pytest.approx(sigma, rel=0.1)
        # in the units of a normalisation, and lazily on Dask input
        lazy = da.from_array(noisy, chunks=(2, 64, 64))
        assert metrics.noise_level(lazy, normalize=(3.0, 2.0)) == pytest.approx(sigma / 2, rel=0.1)
    with pytest.raises(ValueError, match="slices"):
        metrics.noise_level(structure, slices=0)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        metrics.noise_level(structure[0])


def test_noise_spectrum_sees_through_structure_to_the_noise_and_its_colour():
    """Structure that stays from slice to slice is not noise; white noise has a flat
    spectrum of mean σ²; low-pass filtered noise has its power at low frequencies."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    _, yy, xx = np.mgrid[0:10, 0:128, 0:128]
    structure = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 40**2, 5.0, 1.0) + 0.01 * xx
    white = structure + rng.normal(0, 0.3, structure.shape)
    spectrum = metrics.noise_spectrum(white, tile=32)
    assert spectrum.shape == (32, 32)
    assert spectrum.mean() == pytest.approx(0.09, rel=0.1)
    quadrants = [spectrum[:16, :16].mean(), spectrum[16:, 16:].mean()]
    assert quadrants[0] == pytest.approx(quadrants[1], rel=0.2)  # flat
    # the same noise in the units of a normalisation, lazily on Dask input
    lazy = da.from_array(white, chunks=(3, 64, 64))
    halved = metrics.noise_spectrum(lazy, tile=32, normalize=(1.0, 2.0))
    assert halved.mean() == pytest.approx(spectrum.mean() / 4, rel=1e-9)
    # smoothed in-plane: the power sits at the low frequencies
    smooth = np.stack([gaussian_filter(rng.normal(0, 1, (128, 128)), 1.5) for _ in range(10)])
    coloured = metrics.noise_spectrum(structure + smooth, tile=32)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij"))
    assert coloured[(f > 0) & (f < 0.1)].mean() > 20 * coloured[f > 0.35].mean()
    assert coloured.mean() == pytest.approx(smooth.var(), rel=0.25)
    # outside the field of view is left out, not counted as quiet
    from xctdask.pseudolabels import find_field_of_view

    masked = np.where((yy - 64) ** 2 + (xx - 64) ** 2 <= 50**2, white, 0.0)
    fov = find_field_of_view(masked)
    assert metrics.noise_spectrum(masked, tile=32).mean() < 0.8 * 0.09
    inside = metrics.noise_spectrum(masked, tile=32, field_of_view=fov)
    assert inside.mean() == pytest.approx(0.09, rel=0.1)


def test_noise_spectrum_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="at least 2 slices"):
        metrics.noise_spectrum(np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="tile"):
        metrics.noise_spectrum(np.zeros((4, 32, 32)), tile=64)
    with pytest.raises(ValueError, match="no window"):
        metrics.noise_spectrum(np.full((4, 64, 64), np.nan), tile=32)
