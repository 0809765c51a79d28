"""Every network keeps the contract that predict, train and the Segmenter rely on.

One contract class (the idea of zarr's ``StoreTests``), inherited by a test class per
registered model and by a wrapped MONAI ``UNet``: build → forward shape → the declared
outputs agree with the split → save/load round trip → ``predict`` with each output the
network can give → a few training steps.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.inference import MERGERS, OUTPUTS
from xctdask.models.base import OUTPUT_KINDS, Network

RNG = np.random.default_rng(0)
IMAGE = RNG.normal(size=(24, 32, 32)).astype(np.float32)
LABELS = np.digitize(IMAGE, [-0.5, 0.5]).astype(np.uint8)  # three classes
CLEAN = (IMAGE * 0.5).astype(np.float32)


class NetworkContract:
    """Inherit, set ``name`` and ``options`` (or override :meth:`build`)."""

    name: str = ""
    options: ClassVar[dict] = {}
    n_classes = 3

    def build(self) -> Network:
        torch.manual_seed(0)
        return xd.models.build(self.name, 1, self.n_classes, **self.options)

    def example(self, net: Network) -> torch.Tensor:
        if net.spatial_dims == 2:
            return torch.randn(2, net.in_channels * net.context, 32, 32)
        return torch.randn(2, net.in_channels, 16, 32, 32)

    def patch(self, net: Network) -> tuple[int, int, int]:
        return (1, 32, 32) if net.spatial_dims == 2 else (8, 32, 32)

    # -------------------------------------------------------------- the contract
    def test_declares_what_it_is(self):
        net = self.build()
        assert isinstance(net, Network)
        assert net.outputs and set(net.outputs) <= set(OUTPUT_KINDS)
        assert net.spatial_dims in (2, 3) and net.in_channels >= 1
        assert net.context >= 1 and net.context % 2 == 1
        assert net.n_classes == (self.n_classes if net.segments else 0)
        assert set(net.required_targets()) == (
            ({"target"} if net.segments else set()) | ({"clean"} if net.denoises else set())
        )

    def test_forward_shape_and_the_split_agree(self):
        net = self.build().eval()
        x = self.example(net)
        with torch.no_grad():
            parts = net.split(net(x))
        assert tuple(parts) == net.outputs
        spatial = tuple(x.shape[2:])
        if "logits" in parts:
            assert tuple(parts["logits"].shape) == (2, self.n_classes, *spatial)
        if "denoised" in parts:
            assert tuple(parts["denoised"].shape) == (2, net.in_channels, *spatial)

    def test_save_load_round_trip(self, tmp_path):
        net = self.build().eval()
        net.normalization = (1.0, 2.0)
        back = xd.models.load(xd.models.save(net, tmp_path / "net.pt"))
        assert back.outputs == net.outputs and back.normalization == (1.0, 2.0)
        x = self.example(net)
        with torch.no_grad():
            for a, b in zip(net.split(net(x)).values(), back.split(back(x)).values(), strict=True):
                torch.testing.assert_close(a, b)

    def test_predicts_every_output_it_can_give(self):
        net = self.build().eval()
        vol = IMAGE[:6, :24, :24] if net.spatial_dims == 2 else IMAGE[:16, :24, :24]
        tile = 16 if net.spatial_dims == 2 else (8, 16, 16)
        given = [o for o in OUTPUTS if MERGERS[o].source in net.outputs]
        assert given  # every network gives something
        for output in given:
            result = xd.predict(vol, net, output=output, tile=tile, normalize=None)
            values = result.compute(scheduler="sync").values
            expected = ((self.n_classes,) if MERGERS[output].per_class else ()) + vol.shape
            assert values.shape == expected and values.dtype == MERGERS[output].dtype
            assert np.isfinite(values.astype(np.float64)).all()
        for output in sorted(set(OUTPUTS) - set(given)):
            with pytest.raises(ValueError, match="needs"):
                xd.predict(vol, net, output=output, tile=tile, normalize=None)

    def test_trains_a_few_steps(self):
        net = self.build()
        needs = net.required_targets()
        sampler = xd.PatchSampler(
            IMAGE,
            LABELS if "target" in needs else None,
            clean=CLEAN if "clean" in needs else None,
            patch=self.patch(net),
            context=net.context if net.spatial_dims == 2 else 1,
            margin=1,
            split=(0.6, 0.4, 0.0),
            normalize=(0.0, 1.0),
        )
        trained = xd.train(net, sampler, steps=2, batch_size=2, val_every=2, progress=False)
        assert len(trained.history.loss) == 2 and np.isfinite(trained.history.loss).all()
        assert trained.history.val_step == [2]


class TestUNet2d(NetworkContract):
    name, options = "unet2d", {"depth": 2, "f0": 4, "context": 3}


class TestUNet2dDenoiser(NetworkContract):
    name, options = "unet2d", {"depth": 2, "f0": 4, "task": "denoise"}
    n_classes = 3  # ignored by a denoiser: it declares n_classes = 0

    def test_declares_what_it_is(self):
        net = self.build()
        assert net.outputs == ("denoised",) and net.n_classes == 0

    def test_forward_shape_and_the_split_agree(self):
        net = self.build().eval()
        with torch.no_grad():
            parts = net.split(net(torch.randn(2, 1, 32, 32)))
        assert tuple(parts["denoised"].shape) == (2, 1, 32, 32)

    def test_predicts_every_output_it_can_give(self):
        net = self.build().eval()
        out = xd.predict(IMAGE[:4, :24, :24], net, output="denoised", tile=16, normalize=None)
        assert out.shape == (4, 24, 24)
        with pytest.raises(ValueError, match="class scores"):
            xd.predict(IMAGE[:4, :24, :24], net, output="labels", tile=16)


class TestUNet3d(NetworkContract):
    name, options = "unet3d", {"depth": 2, "f0": 2}


class TestDenseUSeg(NetworkContract):
    name = "denseuseg"
    options: ClassVar[dict] = {"k0": 2, "growth": 2, "n_blocks": 2, "modules_per_block": 1}


class TestDenseUSeg2d(NetworkContract):
    name = "denseuseg2d"
    options: ClassVar[dict] = {"k0": 2, "growth": 2, "n_blocks": 2, "modules_per_block": 1}


class TestStackedDenseUSeg(NetworkContract):
    name = "stacked-denseuseg"
    options: ClassVar[dict] = {
        "dims": 2,
        "k0": 2,
        "growth": 2,
        "n_blocks": 2,
        "modules_per_block": 1,
    }


class TestPix2Pix(NetworkContract):
    """The PXCT paper's segmenter: labels, probabilities, a discriminator step."""

    name, options = "pix2pix", {"depth": 2, "f0": 4, "disc_base": 4}


class TestMonaiUNet(NetworkContract):
    """Any plain module, once told its spatial dims (here MONAI's UNet)."""

    def build(self) -> Network:
        from monai.networks.nets import UNet

        torch.manual_seed(0)
        return xd.models.wrap(UNet(2, 1, 3, (4, 8), (2,)), spatial_dims=2)

    def test_save_load_round_trip(self, tmp_path):
        with pytest.raises(ValueError, match=r"models\.build"):
            xd.models.save(self.build(), tmp_path / "net.pt")


def test_every_registered_model_has_a_contract_test():
    tested = {cls.name for cls in NetworkContract.__subclasses__() if cls.name}
    assert set(xd.models.available()) <= tested


def test_a_plain_module_is_refused_without_spatial_dims():
    with pytest.raises(ValueError, match="spatial_dims"):
        xd.predict(IMAGE[:2], torch.nn.Conv2d(1, 2, 3, padding=1))


def test_a_monai_unet_trained_by_xctdask_segments_the_phantom():
    from monai.networks.nets import UNet

    ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=1)
    hq = ds.hq.values
    sampler = xd.PatchSampler(
        hq, ds.labels.values, patch=(1, 64, 64), margin=2, normalize=(hq.mean(), hq.std())
    )
    torch.manual_seed(0)
    unet = UNet(2, 1, 3, (8, 16, 32), (2, 2), num_res_units=1)
    trained = xd.train(
        unet,
        sampler,
        spatial_dims=2,
        steps=80,
        lr=3e-3,
        batch_size=4,
        val_every=40,
        progress=False,
    )
    assert trained is unet and len(unet.history.loss) == 80
    labels = xd.predict(ds.hq, unet, spatial_dims=2, tile=64).values
    miou = float(xd.metrics.mean_iou(labels, ds.labels.values, n_classes=3))
    assert miou > 0.7, miou
