"""Stage-2 training: it learns, it resumes exactly, it handles every kind of network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.sampling import PatchSampler
from xctdask.train import train


@pytest.fixture(scope="module")
def phantom():
    return xd.phantoms.make("fibre-composite", (40, 96, 96), seed=0)


def _sampler(ds, **options):
    hq = ds.hq.values
    options.setdefault("patch", (1, 48, 48))
    options.setdefault("split", (0.6, 0.2, 0.2))
    return PatchSampler(
        hq,
        ds.labels.values,
        margin=2,
        normalize=(float(hq.mean()), float(hq.std())),
        seed=0,
        **options,
    )


def test_a_tiny_unet_learns_the_hq_phantom(phantom):
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=8)
    net = train(net, _sampler(phantom), steps=100, lr=3e-3, val_every=25, progress=False)
    history = net.history
    assert len(history.loss) == 100 and history.val_step == [25, 50, 75, 100]
    assert max(history.val_miou) >= 0.8
    assert history.best_miou == max(history.val_miou)
    assert np.mean(history.loss[-20:]) < np.mean(history.loss[:20])
    hq = phantom.hq.values
    assert net.normalization == (float(hq.mean()), float(hq.std()))
    labels = xd.predict(phantom.hq, net, tile=48)  # uses the stored normalization
    miou = xd.metrics.mean_iou(labels.values, phantom.labels.values, n_classes=3)
    assert float(miou) >= 0.8


def test_resume_continues_the_same_history(phantom, tmp_path):
    sampler = _sampler(phantom, patch=(1, 32, 32), context=3)
    options = dict(
        lr=2e-3,
        schedule="constant",
        val_every=10,
        val_batches=2,
        batch_size=4,
        progress=False,
        seed=3,
    )
    torch.manual_seed(0)
    straight = train(
        xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3, dropout=0.2),
        sampler,
        steps=40,
        checkpoint=tmp_path / "a",
        **options,
    ).history
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3, dropout=0.2)
    train(net, sampler, steps=20, checkpoint=tmp_path / "b", **options)  # "interrupted"
    resumed = train(
        xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3, dropout=0.2),
        sampler,
        steps=40,
        checkpoint=tmp_path / "b",
        resume=True,
        **options,
    ).history
    assert resumed.step == straight.step
    np.testing.assert_allclose(resumed.loss, straight.loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.val_miou, straight.val_miou, rtol=1e-5)
    assert (tmp_path / "b" / "best.pt").exists()


def test_stacked_denoise_segment_and_pix2pix_train(phantom):
    ds = phantom
    lq, hq = ds.lq.values, ds.hq.values
    m, s = float(lq.mean()), float(lq.std())
    sampler = PatchSampler(
        lq,
        ds.labels.values,
        clean=hq,
        patch=(6, 16, 16),
        margin=2,
        split=(0.6, 0.2, 0.2),
        normalize=(m, s),
        seed=1,
    )
    net = xd.models.build(
        "stacked-denseuseg", 1, 3, k0=4, growth=4, n_blocks=2, modules_per_block=1
    )
    net = train(net, sampler, steps=6, val_every=3, val_batches=1, batch_size=2, progress=False)
    assert len(net.history.val_psnr) == 2 and np.isfinite(net.history.loss).all()
    slices = _sampler(ds, patch=(1, 32, 32))
    gan = xd.models.build("pix2pix", 1, 3, depth=2, f0=4, disc_base=4)
    gan = train(gan, slices, steps=4, val_every=2, val_batches=1, batch_size=2, progress=False)
    assert len(gan.history.val_miou) == 2 and np.isfinite(gan.history.loss).all()


def test_bad_input(phantom):
    no_target = PatchSampler(phantom.hq.values, patch=(1, 16, 16), margin=2)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    with pytest.raises(ValueError, match="target"):
        train(net, no_target, steps=2, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(net, _sampler(phantom), steps=0, progress=False)
    stacked = xd.models.build(
        "stacked-denseuseg", 1, 3, k0=2, growth=2, n_blocks=2, modules_per_block=1
    )
    with pytest.raises(ValueError, match="clean"):
        train(stacked, _sampler(phantom, patch=(6, 16, 16)), steps=2, progress=False)
    with pytest.raises(ValueError, match="device must be 'auto'"):
        train(net, _sampler(phantom), steps=2, device="gpu", progress=False)
    if not torch.cuda.is_available():  # refused before the first step, not in it
        with pytest.raises(ValueError, match="no CUDA GPU here"):
            train(net, _sampler(phantom), steps=2, device="cuda:0", progress=False)


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ({"grad_clip": -1.0}, "grad_clip"),  # flipped every gradient: the loss climbed
        ({"final_lr": -0.1}, "final_lr"),  # a negative learning rate at the end
        ({"decay_start": 2.0}, "decay_start"),  # the "linear" schedule never decayed
        ({"lr": float("inf")}, "lr must be"),  # NaN weights from the first step
        ({"lr_segment": -1.0}, "lr_segment"),
        ({"warmup": -5}, "warmup"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"betas": (1.5, 0.9)}, "betas"),
        ({"noise_sigma": -1.0}, "noise_sigma"),
        ({"class_patches": 0}, "class_patches"),
        ({"class_weights": [-1.0, 1.0, 1.0]}, "class_weights"),
        ({"class_weights": [0.0, 0.0, 0.0]}, "all 0"),
        ({"amp": "yes"}, "amp"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_bad_options_are_refused_before_the_first_step(option, words):
    from xctdask.engine import FitConfig

    with pytest.raises(ValueError, match=words):
        FitConfig(**option).check()
    FitConfig(grad_clip=0).check()  # 0 and None: no clipping, as before
    FitConfig(grad_clip=None, class_weights=[0.0, 1.0, 2.0], seed=np.int64(3)).check()


def test_nan_voxels_of_the_scan_and_clean_scan_do_not_poison_training(phantom):
    # a reconstruction with NaN outside its field of view: before, one NaN voxel in a
    # patch made the loss NaN at the first step and every weight after it
    lq, hq = phantom.lq.values.copy(), phantom.hq.values.copy()
    yy, xx = np.mgrid[:96, :96]
    outside = (yy - 47.5) ** 2 + (xx - 47.5) ** 2 > 36**2
    lq[:, outside], hq[:, outside] = np.nan, np.nan
    labels = np.where(outside, 255, phantom.labels.values).astype(np.uint8)
    inside = np.isfinite(lq)
    m, s = float(lq[inside].mean()), float(lq[inside].std())
    sampler = PatchSampler(
        lq, labels, clean=hq, patch=(6, 24, 24), margin=2, split=(0.6, 0.2, 0.2),
        normalize=(m, s), seed=0,
    )  # fmt: skip
    batches = list(sampler.batches("train", 4, 3, seed=0))
    assert all(torch.isfinite(b["image"]).all() for b in batches)  # NaN enters as 0
    assert any(torch.isnan(b["clean"]).any() for b in batches)  # kept: losses skip it
    torch.manual_seed(0)
    net = xd.models.build(
        "stacked-denseuseg", 1, 3, k0=4, growth=4, n_blocks=2, modules_per_block=1
    )
    net = train(net, sampler, steps=6, val_every=3, val_batches=1, batch_size=2, progress=False)
    assert np.isfinite(net.history.loss).all() and np.isfinite(net.history.val_psnr).all()
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_a_loss_that_turns_nan_stops_training_with_a_clear_error(phantom):
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))  # a diverged network
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(net, _sampler(phantom, patch=(1, 32, 32)), steps=3, progress=False)


def test_trains_without_a_validation_slab(phantom):
    sampler = _sampler(phantom, patch=(1, 32, 32), split=(1.0, 0.0, 0.0))
    assert not sampler.has_labels("validation") and sampler.has_labels("train")
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    net = train(net, sampler, steps=12, val_every=5, batch_size=2, progress=False)
    assert net.history.val_step == [] and len(net.history.loss) == 12
    assert net.history.best_step == -1  # nothing validated: the last weights are kept


def test_class_weights_come_from_the_samplers_patches(phantom):
    from xctdask.engine import FitConfig, _resolve_class_weights

    sampler = _sampler(phantom)
    pixels, samples = sampler.class_statistics("train", n_patches=32)
    assert samples.max() <= 32 and (pixels > 0).all()
    # P and S counted by hand from the same patches
    stream = sampler.batches("train", 16, 2, seed=sampler.seed + 7919)
    targets = torch.cat([b["target"] for b in stream]).numpy()
    for c in range(3):
        assert pixels[c] == (targets == c).sum()
        assert samples[c] == (targets == c).any(axis=(1, 2)).sum()
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    asked = _resolve_class_weights(FitConfig(class_weights=True, class_patches=32), net, sampler, 3)
    torch.testing.assert_close(asked.class_weights, xd.losses.class_weights(pixels, samples))
    assert _resolve_class_weights(FitConfig(), net, sampler, 3).class_weights is None
    stacked = xd.models.build(
        "stacked-denseuseg", 1, 3, k0=4, growth=4, n_blocks=2, modules_per_block=1
    )
    auto = _resolve_class_weights(FitConfig(class_patches=32), stacked, sampler, 3)
    assert auto.class_weights is not None  # the paper's weighted CE by default
    with pytest.raises(ValueError, match="class_weights"):
        FitConfig(class_weights="median").check()


def test_strong_augmentation_changes_the_images_not_the_targets(phantom):
    """``strong=``: intensity augmentation of stage-2 images after the weak one."""
    from xctdask.augment import StrongAugment
    from xctdask.engine import FitConfig, _augmented

    batch = next(_sampler(phantom).batches("train", 4, 1))
    plain = _augmented(batch, FitConfig(seed=0), step=0)
    strong = _augmented(batch, FitConfig(seed=0, strong=StrongAugment(p=1.0)), step=0)
    torch.testing.assert_close(strong["target"], plain["target"])  # same weak geometry
    assert not torch.allclose(strong["image"], plain["image"])
    assert strong["image"].shape == plain["image"].shape
