"""models.save / models.load: one file with config, weights and normalisation."""

from __future__ import annotations

import pytest
import torch

import xctdask as xd


def test_round_trip_keeps_weights_config_and_normalization(tmp_path):
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4, context=3)
    net.normalization, net.class_names = (0.25, 3.0), ["air", "matrix", "fibre"]
    path = xd.models.save(net, tmp_path / "net.pt")
    back = xd.models.load(path)
    assert back.config == net.config and not back.training
    assert back.normalization == (0.25, 3.0) and back.class_names == net.class_names
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    torch.testing.assert_close(back(x), net(x))


def test_loads_a_training_checkpoint(tmp_path):
    net = xd.models.build("unet2d", 1, 2, depth=2, f0=4)
    torch.save({"model": net.state_dict(), "config": net.config}, tmp_path / "last.pt")
    back = xd.models.load(tmp_path / "last.pt")
    assert back.normalization is None and back.n_parameters == net.n_parameters


def test_refuses_to_overwrite_and_bad_files(tmp_path):
    net = xd.models.build("unet2d", 1, 2, depth=2, f0=4)
    path = xd.models.save(net, tmp_path / "net.pt")
    with pytest.raises(FileExistsError):
        xd.models.save(net, path)
    xd.models.save(net, path, overwrite=True)
    with pytest.raises(FileNotFoundError):
        xd.models.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an xctdask model file"):
        xd.models.load(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="config"):
        xd.models.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"models\.build"):
        xd.models.save(torch.nn.Conv2d(1, 1, 1), tmp_path / "conv.pt")
