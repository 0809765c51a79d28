"""Every paper preset builds its paper's network, trains a few steps, saves and loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.presets import PRESETS, get

pytest.importorskip("adabelief_pytorch")  # the Modular U-Net presets' optimiser
pytest.importorskip("kornia")  # the SR-CT preset's CLAHE


SLICE_PRESETS = [n for n, p in PRESETS.items() if p.model not in ("unet3d", "stacked-denseuseg")]
VOLUME_PRESETS = [n for n in PRESETS if n not in SLICE_PRESETS]


@pytest.fixture(scope="module")
def phantom():
    ds = xd.phantoms.make("fibre-composite", (48, 48, 48), seed=3)
    return ds.lq.values.astype(np.float32), ds.hq.values.astype(np.float32)


@pytest.mark.parametrize("name", SLICE_PRESETS)
def test_each_slice_preset_segments_saves_and_loads(name, phantom, tmp_path):
    lq, _ = phantom
    preset = get(name)
    steps_3 = 1 if name == "sr-ct-unsupervised" else 0
    seg = xd.Segmenter(
        3, preset=name, steps=2, steps_self_correct=steps_3, progress=False, mask=None
    )
    seg.fit(lq)
    net = seg.network_
    assert net.config["name"] == preset.model
    for key, value in preset.model_options.items():
        assert net.config[key] == value, key
    assert int(net.context) == preset.context
    assert seg.history["stage2"]["step"] == [0, 1]
    assert ("stage3" in seg.history) == bool(steps_3)
    seg.save(tmp_path / "seg")
    again = xd.Segmenter.load(tmp_path / "seg")
    assert again.preset == name
    x = torch.from_numpy(lq[:1, :32, :32]).expand(preset.context, 32, 32)[None].contiguous()
    with torch.no_grad():
        torch.testing.assert_close(net(x), again.network_(x))


@pytest.mark.parametrize("name", VOLUME_PRESETS)
def test_each_volume_preset_trains_saves_and_loads(name, phantom, tmp_path):
    """3-D presets at their own sizes need more slices than a test volume has: their
    network and training options, on small 3-D patches, without a validation slab."""
    lq, hq = phantom
    preset = get(name)
    labels = xd.PseudoLabeler(3).fit_predict(lq)
    clean = hq if preset.model == "stacked-denseuseg" else None
    sampler = xd.PatchSampler(
        lq,
        labels,
        clean=clean,
        patch=(16, 16, 16),
        split=(1, 0, 0),
        margin=0,
        normalize=(float(lq.mean()), float(lq.std())),
        n_classes=3,
    )
    net = preset.build(3)
    options = {**preset.fit_options("train"), "batch_size": 2, "class_patches": 8}
    net = xd.train(net, sampler, steps=2, progress=False, val_every=10**9, **options)
    assert net.history.step == [0, 1]
    xd.models.save(net, tmp_path / "net.pt")
    again = xd.models.load(tmp_path / "net.pt")
    x = torch.from_numpy(lq[:16, :16, :16])[None, None]
    net.eval()
    with torch.no_grad():
        for a, b in zip(net.split(net(x)).values(), again.split(again(x)).values(), strict=True):
            torch.testing.assert_close(a, b)


def test_preset_settings_follow_the_papers():
    modular = get("modular-unet-2.5d")
    net = modular.build(3)
    assert net.config["up"] == "transposed3" and net.config["bn_momentum"] == 0.5
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.momentum == 0.5
    options = modular.fit_options("train")
    assert isinstance(options["loss"], xd.losses.Jaccard2Loss)
    assert options["optimizer"] == "adabelief" and options["schedule"] == "linear"
    assert options["final_lr"] == 0.1  # 1e-3 down to 1e-4
    srct = get("sr-ct-unsupervised")
    assert 1.8e6 < srct.build(3).n_parameters < 2.2e6  # "≈ 2 M parameters"
    assert srct.train["label_smoothing"] > 0 and srct.self_correct["label_smoothing"] > 0
    assert "clahe" in srct.fit_options("self_correct")["strong"].ops
    stacked = get("stacked-denseuseg")
    assert stacked.train["class_weights"] is True and stacked.train["weight_decay"] == 5e-4
    assert get("unet-pxct").build(2).config["residual"] is False


def test_a_preset_is_checked_before_any_data_is_read():
    with pytest.raises(ValueError, match="unknown preset"):
        xd.Segmenter(3, preset="tomo2seg").validate()
    lq = np.zeros((16, 32, 32), np.float32)
    with pytest.raises(ValueError, match="no denoiser"):
        xd.Segmenter(3, preset="modular-unet-2d", progress=False).fit(lq, clean=lq)
    with pytest.raises(ValueError, match="clean"):
        xd.Segmenter(3, preset="stacked-denseuseg", progress=False).fit(lq)
