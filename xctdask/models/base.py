"""What every xctdask network reports: parameters, halo, the config that rebuilds it."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Network", "arguments", "crop_back", "pad_to_multiple", "spatial_sizes"]


class Network(nn.Module):
    """Base class of the zoo's networks.

    Subclasses set ``config`` (the registry name and constructor arguments that rebuild
    the network), ``halo`` (receptive-field margin in voxels per axis ``(z, y, x)``) and
    ``spatial_dims`` (2 for slice networks, 2D and 2.5D; 3 for volume networks).
    """

    __jit_ignored_attributes__: ClassVar[list[str]] = ["config"]
    __jit_unused_properties__: ClassVar[list[str]] = ["n_parameters"]

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return f"n_parameters={self.n_parameters:,}, halo={self.halo}"


def arguments(name: str, local_variables: dict) -> dict:
    """A network's ``config``: its registry name and constructor arguments (from
    ``locals()`` at the top of ``__init__``)."""
    skip = {"self", "__class__"}
    return {"name": name, **{k: v for k, v in local_variables.items() if k not in skip}}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, list[int]]:
    """Pad the spatial axes of ``x`` (N, C, ...) up to a multiple, by edge replication.

    Padding is split evenly between both sides so the network sees the input centred.
    Returns the padded tensor and the number of voxels added before each spatial axis
    (what :func:`crop_back` needs). TorchScript-compatible.
    """
    before: list[int] = []
    pad: list[int] = []
    for d in range(x.dim() - 1, 1, -1):  # F.pad lists the last axis first
        extra = (multiple - x.shape[d] % multiple) % multiple
        before.insert(0, extra // 2)
        pad.append(extra // 2)
        pad.append(extra - extra // 2)
    if sum(pad) == 0:
        return x, before
    return F.pad(x, pad, mode="replicate"), before


def crop_back(y: torch.Tensor, before: list[int], sizes: list[int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on an output with the padded spatial size."""
    for i in range(len(sizes)):
        y = y.narrow(2 + i, before[i], sizes[i])
    return y


def spatial_sizes(x: torch.Tensor) -> list[int]:
    return [int(s) for s in x.shape[2:]]
