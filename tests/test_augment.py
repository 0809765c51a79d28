"""Augmentations keep image, labels and clean target aligned; strong ones change only
the image, alike for every slice of a 2.5D stack; everything is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xctdask import augment


def _stack(n=4, k=5, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, size, size, generator=g)
    return base + torch.arange(k).view(1, k, 1, 1)  # slice i = slice 0 + i


def test_weak_keeps_labels_and_clean_aligned_with_the_image():
    image = _stack()
    labels = (image[:, 2] > 2.5).long()  # labels are a function of the middle slice
    labels[:, :3, :3] = 255
    clean = 2 * image[:, 2:3]
    for seed in range(10):
        img, lab, cln = augment.weak(image, labels, clean, seed=seed)
        expect = (img[:, 2] > 2.5).long()
        keep = lab != 255
        assert torch.equal(lab[keep], expect[keep])
        assert int((lab == 255).sum()) == int((labels == 255).sum())
        torch.testing.assert_close(cln, 2 * img[:, 2:3])
        # all slices of the 2.5D stack moved alike
        torch.testing.assert_close(
            img - img[:, :1], torch.arange(5.0).view(1, 5, 1, 1).expand_as(img)
        )


def test_weak_reaches_all_eight_symmetries_and_inputs_stay_untouched():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    before = image.clone()
    seen = {tuple(augment.weak(image, seed=s)[0].flatten().tolist()) for s in range(200)}
    assert len(seen) == 8
    assert torch.equal(image, before)
    rect = torch.arange(12.0).view(1, 1, 3, 4)
    shapes = {augment.weak(rect, seed=s)[0].shape for s in range(50)}
    assert shapes == {rect.shape}  # non-square slices are never turned by 90°


def test_weak_in_3d_moves_labels_with_the_image():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 1, 6, 8, 8, generator=g)
    labels = (image[:, 0] > 0.5).long()
    for seed in range(8):
        img, lab, _ = augment.weak(image, labels, seed=seed)
        assert torch.equal(lab, (img[:, 0] > 0.5).long())


def test_strong_changes_every_slice_alike_and_is_reproducible():
    settings = augment.StrongAugment(p=1.0, noise_sigma=(0.0, 0.0))  # no noise: exact
    image = _stack(k=1).repeat(1, 5, 1, 1)  # five identical slices
    out = augment.strong(image, settings, seed=3)
    assert not torch.allclose(out, image)
    for c in range(1, 5):
        torch.testing.assert_close(out[:, c], out[:, 0])
    torch.testing.assert_close(augment.strong(image, settings, seed=3), out)
    assert not torch.allclose(augment.strong(image, settings, seed=4), out)


def test_noise_sigma_is_drawn_per_sample():
    image = torch.zeros(64, 1, 16, 16)
    image[:, :, :8] = 1.0  # std 0.5 in every sample
    assert torch.equal(augment.strong(image, augment.StrongAugment(p=0.0), seed=0), image)
    noise = augment.StrongAugment(p=1.0, ops=("noise",), noise_sigma=(0.0, 1.0))
    residual = (augment.strong(image, noise, seed=1) - image).std(dim=(1, 2, 3))
    # sigma ~ U(0, 1) · std: spread over the batch, inside the range
    assert residual.min() < 0.1 and residual.max() > 0.35 and residual.max() < 0.55


def test_local_equalisation_flattens_a_skewed_histogram():
    g = torch.Generator().manual_seed(2)
    x = torch.empty(1, 64, 64).exponential_(generator=g)
    y = augment.equalize_local(x, tiles=4)
    torch.testing.assert_close(y.mean(), x.mean())
    torch.testing.assert_close(y.std(), x.std())

    def skew(t):
        t = t.flatten()
        return float(((t - t.mean()) ** 3).mean() / t.std() ** 3)

    assert skew(x) > 1.5 and abs(skew(y)) < 0.3  # exponential → nearly uniform


def test_cutout_fills_boxes_with_the_mean():
    only_cutout = augment.StrongAugment(p=1.0, ops=("cutout",), cutout_fraction=(0.3, 0.3))
    image = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    out = augment.strong(image, only_cutout, seed=0)
    for n in range(2):
        _, counts = torch.unique(out[n].round(decimals=5), return_counts=True)
        assert counts.max() >= 0.3 * 32 * 0.3 * 32 * 0.9  # at least one filled box


def test_default_strong_set_keeps_grey_values_material_specific():
    # gamma and local equalisation remap grey values; they are opt-in, not default
    assert augment.StrongAugment().ops == augment.DEFAULT_OPS
    assert not {"gamma", "equalize"} & set(augment.DEFAULT_OPS)
    assert set(augment.DEFAULT_OPS) < set(augment.OPS)
    image = torch.zeros(16, 1, 32, 32)
    image[:, :, :, 16:] = 1.0  # two materials, left dark and right bright
    out = augment.strong(image, augment.StrongAugment(p=1.0, cutout_fraction=(0.1, 0.1)), seed=0)
    left, right = out[..., :8].mean(dim=(1, 2, 3)), out[..., 24:].mean(dim=(1, 2, 3))
    assert bool((right > left + 0.3).all())  # every sample keeps the materials apart
    custom = augment.StrongAugment(ops=("gamma", "equalize"))
    assert custom.ops == ("gamma", "equalize")


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="image must be"):
        augment.weak(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="labels"):
        augment.weak(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown strong"):
        augment.StrongAugment(ops=("mixup",))
    with pytest.raises(TypeError, match="float"):
        augment.strong(torch.zeros(1, 1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"blur_sigma": (0.0, 0.0)}, "blur_sigma must be"),  # made NaN patches
        ({"gamma": 0.5, "ops": ("gamma",)}, r"gamma must be a \(low, high\) pair"),
        ({"noise_sigma": (-1.0, -0.5)}, "noise_sigma"),
        ({"contrast": (2.0, 0.5)}, "low ≤ high"),
        ({"cutout_fraction": (0.5, 1.5)}, "at most 1"),
        ({"equalize_tiles": 0, "ops": ("equalize",)}, "equalize_tiles"),
        ({"clahe_tiles": 0}, "clahe_tiles"),
        ({"clahe_clip": -1.0}, "clahe_clip"),
    ],
)
def test_bad_strong_settings_are_refused_when_made_not_at_a_random_step(settings, words):
    with pytest.raises(ValueError, match=words):
        augment.StrongAugment(**settings)


def test_local_equalisation_refuses_fewer_than_two_levels():
    image = torch.rand(1, 16, 16)
    with pytest.raises(ValueError, match="levels"):
        augment.equalize_local(image, levels=1)  # gave an all-NaN sample
    with pytest.raises(ValueError, match="tiles"):
        augment.equalize_local(image, tiles=0)


@pytest.mark.gpu
def test_on_the_gpu_the_batch_stays_there():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    image = _stack().cuda()
    labels = (image[:, 2] > 2.5).long()
    img, lab, _ = augment.weak(image, labels, seed=0)
    out = augment.strong(img, augment.StrongAugment(p=1.0), seed=0)
    assert img.is_cuda and lab.is_cuda and out.is_cuda
    assert torch.equal(lab, (img[:, 2] > 2.5).long())


def test_degrade_adds_noise_near_the_level_asked_to_the_fraction_asked():
    image = torch.zeros(40, 1, 64, 64)
    out = augment.degrade(image, 0.3, 0.5, seed=0)
    levels = out.std(dim=(1, 2, 3))
    touched = levels > 0
    assert int(touched.sum()) == 20 and torch.equal(image, torch.zeros_like(image))
    # sigma · U(0.5, 1.5): inside the range, spread over it
    assert levels[touched].min() > 0.14 and levels[touched].max() < 0.46
    assert levels[touched].max() - levels[touched].min() > 0.1
    assert torch.equal(augment.degrade(image, 0.3, 0.5, seed=0), out)  # reproducible
    assert torch.equal(augment.degrade(image, 0.0, 1.0, seed=0), image)
    with pytest.raises(ValueError, match="fraction"):
        augment.degrade(image, 0.3, 1.5)
    with pytest.raises(ValueError, match="sigma"):
        augment.degrade(image, -1.0)


def test_degrade_with_a_spectrum_gives_noise_of_that_colour_and_level():
    """Noise shaped like a measured spectrum: the level asked, its power where the
    spectrum puts it, independent from slice to slice, on 2.5D and 3-D patches."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(16), np.fft.fftfreq(16), indexing="ij"))
    low = np.where(f < 0.15, 1.0, 0.0)
    image = torch.zeros(40, 3, 48, 48)
    out = augment.degrade(image, 0.3, 1.0, spectrum=low, seed=0)
    levels = out.std(dim=(1, 2, 3))
    assert levels.min() > 0.14 and levels.max() < 0.46  # sigma · U(0.5, 1.5)
    assert float(levels.mean()) == pytest.approx(0.3, rel=0.15)
    power = (torch.fft.fft2(out).abs() ** 2).mean(dim=(0, 1)).numpy()
    g = np.hypot(*np.meshgrid(np.fft.fftfreq(48), np.fft.fftfreq(48), indexing="ij"))
    assert power[g > 0.2].max() < 1e-6 * power[g < 0.1].mean()  # nothing above the cut
    between = np.corrcoef(out[:, 0].flatten().numpy(), out[:, 1].flatten().numpy())[0, 1]
    assert abs(between) < 0.05  # each slice of a 2.5D patch gets its own noise
    white = augment.degrade(image, 0.3, 1.0, seed=0)
    assert out.diff(dim=-1).std() < 0.5 * white.diff(dim=-1).std()  # smooth, not white
    volume = augment.degrade(torch.zeros(4, 1, 8, 32, 32), 0.3, 1.0, spectrum=low, seed=0)
    assert volume.shape == (4, 1, 8, 32, 32) and float(volume.std()) > 0.1
    assert torch.equal(augment.degrade(image, 0.3, 1.0, spectrum=low, seed=0), out)
    with pytest.raises(ValueError, match="2-D array"):
        augment.degrade(image, 0.3, spectrum=np.ones(8))
    with pytest.raises(ValueError, match="no power"):
        augment.degrade(image, 0.3, spectrum=np.zeros((8, 8)))
