"""Save a zoo network to one file and load it back: weights, config, normalisation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xctdask._files import check_new_file
from xctdask.io.locations import location
from xctdask.models.registry import build

__all__ = ["atomic_save", "load", "read_file", "save"]

_FORMAT = "xctdask-model"


def save(net: nn.Module, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``net`` (a zoo network) to ``path``: config, weights and, when the network
    carries them, its intensity ``normalization`` (mean, std) and ``class_names``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    ValueError
        For a network without a ``config`` (not built by :func:`xctdask.models.build`).

    Examples
    --------
    >>> import tempfile, os, xctdask as xd
    >>> net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    >>> net.normalization = (0.5, 2.0)
    >>> path = xd.models.save(net, os.path.join(tempfile.mkdtemp(), "net.pt"))
    >>> xd.models.load(path).normalization
    (0.5, 2.0)
    """
    path = check_new_file(path, overwrite, "network.pt")
    config = getattr(net, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("only networks built by xctdask.models.build can be saved")
    from xctdask import __version__

    state = {
        "format": _FORMAT,
        "version": __version__,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "normalization": getattr(net, "normalization", None),
        "class_names": getattr(net, "class_names", None),
    }
    atomic_save(state, path)
    return path


def atomic_save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file.

    The one way xctdask writes model files, checkpoints and Segmenters.
    """
    path = check_new_file(path, overwrite=True)  # callers decide about existing files
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # left only when saving or renaming failed
    return path


def load(path: str | os.PathLike, *, map_location: str = "cpu") -> nn.Module:
    """Load a network written by :func:`save` (or a ``train`` checkpoint with a config).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an xctdask model or checkpoint.
    """
    path = Path(path)
    state = read_file(path, map_location=map_location)
    if not isinstance(state.get("config"), dict):
        raise ValueError(f"{path} holds no network config: not an xctdask model file")
    config = dict(state["config"])
    weights = state.get("state_dict", state.get("model"))
    if weights is None:
        raise ValueError(f"{path} holds no weights")
    try:
        net = build(config.pop("name"), **config)
        net.load_state_dict(weights)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{path} does not rebuild an xctdask network: {err}") from None
    norm = state.get("normalization")
    net.normalization = tuple(norm) if norm is not None else None
    net.class_names = state.get("class_names")
    net.source_location = location(path)  # the write guard refuses to write over it
    return net.eval()


def read_file(path: Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """The dict in an xctdask file (model, checkpoint or Segmenter), loaded with
    ``weights_only=True``: no code in the file runs.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not one xctdask wrote (random bytes, a pickle that needs code to
        load, another program's file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # PyTorch's message advises weights_only=False: never for us
        raise ValueError(
            f"{path} is not an xctdask model file (it cannot be read as one: {type(err).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not an xctdask model file")
    return state
