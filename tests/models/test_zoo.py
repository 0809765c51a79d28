"""Every model: shapes on odd sizes, gradients everywhere, pickling, scripting, config."""

from __future__ import annotations

import pickle

import pytest
import torch

from xctdask import models

TINY = {
    "unet2d": {"depth": 2, "f0": 4},
    "unet3d": {"depth": 2, "f0": 2},
    "denseuseg": {"k0": 2, "growth": 2, "n_blocks": 2, "modules_per_block": 1},
    "denseuseg2d": {"k0": 4, "growth": 4, "n_blocks": 3, "modules_per_block": 2},
    "stacked-denseuseg": {"k0": 2, "growth": 2, "n_blocks": 2, "modules_per_block": 1},
    "pix2pix": {"depth": 2, "f0": 4, "disc_base": 4},
}


def _input(net, batch=2, channels=1, size=(7, 19, 13)):
    if net.spatial_dims == 2:
        return torch.randn(batch, channels * net.config.get("context", 1), *size[1:])
    return torch.randn(batch, channels, *size)


def _logits(out):
    return out[1] if isinstance(out, tuple) else out


def test_registry_lists_every_model():
    assert set(models.available()) == set(TINY)
    with pytest.raises(ValueError, match="unknown model"):
        models.build("vnet")


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shape_on_odd_sizes(name):
    torch.manual_seed(0)
    net = models.build(name, in_channels=1, n_classes=3, **TINY[name]).eval()
    x = _input(net)
    with torch.no_grad():
        out = net(x)
    logits = _logits(out)
    assert logits.shape == (x.shape[0], 3, *x.shape[2:])
    if isinstance(out, tuple):
        assert out[0].shape == x.shape  # the denoised volume
    assert net.n_parameters > 0
    assert len(net.halo) == 3 and all(h >= 0 for h in net.halo)


@pytest.mark.parametrize("context", [3, 5])
@pytest.mark.parametrize("skip", [True, False])
def test_unet_25d_and_without_skips(context, skip):
    net = models.build("unet2d", 2, 4, depth=3, f0=4, context=context, skip=skip).eval()
    x = torch.randn(1, 2 * context, 23, 17)
    assert net(x).shape == (1, 4, 23, 17)
    assert net(x.view(1, 2, context, 23, 17)).shape == (1, 4, 23, 17)  # (N, C, k, H, W)
    assert net.halo[0] == (context - 1) // 2
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(1, 2, 23, 17))


@pytest.mark.parametrize(
    "options",
    [
        {"down": "maxpool", "up": "upsample"},
        {"norm": "group", "activation": "prelu"},
        {"norm": "instance", "dropout": 0.3},
    ],
)
def test_unet_variants(options):
    net = models.build("unet3d", 1, 2, depth=2, f0=4, **options).eval()
    assert net(torch.randn(1, 1, 9, 10, 11)).shape == (1, 2, 9, 10, 11)


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(1)
    net = models.build(name, in_channels=1, n_classes=3, **TINY[name]).train()
    # the PatchGAN's four stride-2/4×4 layers need about 32 pixels
    x = _input(net, batch=2, size=(6, 41, 35) if name == "pix2pix" else (6, 17, 15))
    out = net(x)
    loss = _logits(out).square().mean()
    if isinstance(out, tuple):
        loss = loss + out[0].square().mean()
    if name == "pix2pix":
        loss = loss + net.discriminate(x, torch.softmax(out, 1)).mean()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_a_two_million_parameter_unet_exists():
    # the size the SR-CT pseudo-label paper compares networks at
    net = models.build("unet2d", 1, 3, depth=4, f0=16, context=5)
    assert 1.6e6 < net.n_parameters < 2.4e6


@pytest.mark.parametrize("name", sorted(TINY))
def test_picklable_and_rebuildable_from_config(name):
    torch.manual_seed(2)
    net = models.build(name, 1, 3, **TINY[name]).eval()
    clone = pickle.loads(pickle.dumps(net))
    x = _input(net, batch=1)
    with torch.no_grad():
        a, b = net(x), clone(x)
    torch.testing.assert_close(_logits(a), _logits(b))
    config = dict(net.config)
    rebuilt = models.build(config.pop("name"), **config)
    assert rebuilt.n_parameters == net.n_parameters


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["unet2d", "unet3d", "denseuseg", "stacked-denseuseg"])
def test_scriptable(name):
    net = models.build(name, 1, 2, **TINY[name]).eval()
    scripted = torch.jit.script(net)
    x = _input(net, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(_logits(scripted(x)), _logits(net(x)))


def test_stacked_param_groups_cover_every_parameter_once():
    net = models.build("stacked-denseuseg", 1, 2, **TINY["stacked-denseuseg"])
    groups = net.param_groups(lr_denoise=1e-4, lr_segment=1e-5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))
    assert [g["lr"] for g in groups] == [1e-4, 1e-5]


def test_the_halo_bounds_the_receptive_field():
    torch.manual_seed(3)
    net = models.build("unet2d", 1, 1, depth=2, f0=4, norm="none").eval()
    size = 2 * net.halo[1] + 33
    x = torch.randn(1, 1, size, size, requires_grad=True)
    centre = size // 2
    net(x)[0, 0, centre, centre].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    reach = max((rows - centre).abs().max(), (cols - centre).abs().max())
    assert 0 < reach <= net.halo[1]


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("unet2d", {"depth": 0}, "depth"),
        ("unet2d", {"context": 2}, "odd"),
        ("unet3d", {"context": 3}, "2D networks only"),
        ("unet2d", {"norm": "weight"}, "norm"),
        ("unet2d", {"activation": "gelu"}, "activation"),
        ("denseuseg", {"growth": 0}, "growth"),
    ],
)
def test_bad_options_are_clear_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, 1, 2, **options)


@pytest.mark.parametrize("name", ["unet2d", "denseuseg2d", "pix2pix"])
def test_exportable(name):
    # torch.export captures the whole forward as one graph (what torch.compile and
    # AOT deployment start from); no graph breaks are allowed
    net = models.build(name, 1, 2, **TINY[name]).eval()
    x = _input(net, batch=1, size=(6, 40, 36))
    exported = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), net(x))
