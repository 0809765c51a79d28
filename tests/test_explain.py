"""Grad-CAM over captum: lazily over a volume equal to slice by slice; it localises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.explain import gradcam


@pytest.fixture(scope="module")
def trained():
    """A tiny 2.5D U-Net that learned a bright square on a dark background."""
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 0.1, (10, 32, 32)).astype(np.float32)
    labels = np.zeros(vol.shape, np.uint8)
    labels[:, 8:20, 10:22] = 1
    vol[labels == 1] += 1.0
    sampler = xd.PatchSampler(
        vol, labels, patch=(1, 32, 32), context=3, n_classes=2, split=(1.0, 0.0, 0.0)
    )
    net = xd.models.build("unet2d", 1, 2, depth=1, f0=8, context=3)
    torch.manual_seed(0)
    net = xd.train(net, sampler, steps=40, batch_size=4, lr=1e-2, progress=False)
    return net, vol, labels


def test_lazy_equals_slice_by_slice_and_the_heat_lies_on_the_class(trained):
    net, vol, labels = trained
    import dask.array as da

    eager = gradcam(net, vol, 1)
    lazy = gradcam(net, da.from_array(vol, chunks=(3, 32, 32)), 1, lazy=True)
    assert isinstance(lazy, da.Array)
    # the same slices through the same network; float sums may differ in the last bits
    # with the thread count, and the ReLU of a near-zero sum with them
    np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-3, atol=1e-3 * eager.max())
    inside = eager[labels == 1].mean()
    outside = eager[labels == 0].mean()
    assert inside > outside


def test_chunks_explained_in_parallel_threads_do_not_see_each_other(trained):
    """captum hooks the shared network's layer: concurrent chunks must not mix maps."""
    net, vol, _ = trained
    import dask
    import dask.array as da

    eager = gradcam(net, vol, 1)
    lazy = gradcam(net, da.from_array(vol, chunks=(1, 32, 32)), 1, lazy=True)
    with dask.config.set(scheduler="threads", num_workers=4):
        for _ in range(3):
            np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-3, atol=1e-3 * eager.max())


def test_layers_by_name_and_bad_requests(trained):
    net, vol, _ = trained
    heat = gradcam(net, vol, 0, layer="top", slices=[0, 9])
    assert heat.shape == (2, 32, 32) and (heat >= 0).all()
    with pytest.raises(ValueError, match="no layer"):
        gradcam(net, vol, 0, layer="nope")
    with pytest.raises(ValueError, match="classes"):
        gradcam(net, vol, 5)
    with pytest.raises(ValueError, match="outside"):
        gradcam(net, vol, 0, slices=[10])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        gradcam(net, vol, 0, batch_size=0)  # was range()'s "arg 3 must not be zero"


def test_a_3d_network_takes_the_volume_at_once():
    net = xd.models.build("unet3d", 1, 2, depth=1, f0=4)
    vol = np.random.default_rng(1).random((8, 16, 16), dtype=np.float32)
    heat = gradcam(net, vol, 1)
    assert heat.shape == vol.shape
    with pytest.raises(ValueError, match=r"2-D and 2\.5-D"):
        gradcam(net, vol, 1, lazy=True)
