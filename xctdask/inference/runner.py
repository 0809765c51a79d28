"""The runner of ``predict``: one inference block's tiles through the network.

:func:`run_block` is what a block task does on a worker: read the block's input region
(from the store, or from the input chunks it was given), normalise it with the global
statistics, run every lattice tile that touches the block in batches, add their
blend-weighted outputs over the block's own region, divide by the lattice's weight sum,
and finalise with the output's merger. A 2-D network on one slicing streams the block
slice group by slice group, so memory stays near the input region's size.

The network arrives as task data (sent to each worker once) and is placed on the
worker's device once per process (:func:`placed`); CuPy input reaches PyTorch through
DLPack and the result goes back as CuPy (:mod:`xctdask.backend`).
"""

from __future__ import annotations

import copy
import ctypes
import itertools
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xctdask.backend import from_torch, to_torch
from xctdask.engine import resolve_device
from xctdask.inference.mergers import MERGERS
from xctdask.inference.plan import InferencePlan, Region, Slicing

__all__ = ["BlockSpec", "placed", "run_block", "tune_allocator"]

_PLACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_ALLOCATOR_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator(threshold: int = 64 * 2**20) -> bool:
    """Let glibc serve the network's temporary buffers from the heap (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting that
    freezes glibc's mmap threshold at 128 KiB, so every convolution buffer is a fresh
    ``mmap`` that page-faults on first touch. Measured on this project's 2-core machine
    (``unet2d``, f0 = 16, batch 8 of 5×128×128, one thread): 0.27 s per batch in a
    worker against 0.12 s in a plain process, and 0.09 s after this call. It raises
    the mmap and trim thresholds to ``threshold`` bytes. Linux/glibc only; set the
    environment variable ``XCTDASK_TUNE_MALLOC=0`` to leave the allocator alone.
    Returns whether the allocator is tuned.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("XCTDASK_TUNE_MALLOC") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
        ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def placed(net: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``net`` in eval mode on ``device``, made once per process and device."""
    with _LOCK:
        per_net = _PLACED.setdefault(net, {})
        key = (str(device), channels_last)
        if key not in per_net:
            module = net if device.type == "cpu" else copy.deepcopy(net).to(device)
            if channels_last:
                module = module.to(memory_format=torch.channels_last)
            per_net[key] = module.eval()
        return per_net[key]


@dataclass(frozen=True)
class BlockSpec:
    """Everything a block task needs besides data (one piece of task data)."""

    plan: InferencePlan
    output: str
    batch_size: int
    device: str
    precision: str
    channels_last: str


def _mean_std(stats: Any) -> tuple[float, float] | None:
    if stats is None:
        return None
    mean, std = (float(v) for v in np.asarray(stats).ravel()[:2])
    return mean, std


def _tile_batches(items: list, size: int):
    for first in range(0, len(items), size):
        yield items[first : first + size]


class _Runner:
    """Batched forward passes of one block: device, precision, memory format."""

    def __init__(self, net: nn.Module, spec: BlockSpec, stats: tuple[float, float] | None):
        tune_allocator()
        self.device = resolve_device(spec.device)
        precision = spec.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.dtype = _PRECISIONS[precision]
        self.channels_last = spec.channels_last == "on" or (
            spec.channels_last == "auto"
            and self.device.type == "cuda"
            and spec.plan.spatial_dims == 2
        )
        self.module = placed(net, self.device, self.channels_last)
        self.merger = MERGERS[spec.output]
        self.stats = stats
        self.batch_size = spec.batch_size

    def __call__(self, inp: torch.Tensor) -> torch.Tensor:
        """Network output (the merger's source), prepared for averaging, float32."""
        if self.channels_last and inp.dim() == 4:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            raw = self.module(inp)
        parts = self.module.split(raw) if hasattr(self.module, "split") else {"logits": raw}
        out = self.merger.prepare(parts[self.merger.source])
        if self.merger.source == "denoised" and self.stats is not None:
            mean, std = self.stats  # back to grey values; exact: the blend is a mean
            out = out * std + mean
        return out


def _slicing_mean(
    x: torch.Tensor,
    read: Region,
    block: Region,
    slicing: Slicing,
    context: int,
    spatial_dims: int,
    runner: _Runner,
    slices: range | None = None,
) -> torch.Tensor:
    """Blend-weighted mean over a block (in slicing coordinates) of one slicing.

    ``x`` is the normalised input over ``read`` (both in slicing coordinates). For a
    2-D network ``slices`` restricts the output to some slices of the block. Tiles are
    visited in lattice order, so every voxel sums its tiles in the same order whatever
    the blocks are.
    """
    lat = slicing.lattice
    n0 = lat.shape[0]
    if spatial_dims == 2:
        half = (context - 1) // 2
        rows = slices if slices is not None else range(*block[0])
        ys = lat.covering(1, *block[1])
        xs = lat.covering(2, *block[2])
        corners = [(z, int(y), int(x_)) for z in rows for y in ys for x_ in xs]
        out_shape = (len(rows), block[1][1] - block[1][0], block[2][1] - block[2][0])
        origin = (rows.start, block[1][0], block[2][0])
    else:
        half = 0
        per_axis = [lat.covering(i, *block[i]) for i in range(3)]
        corners = [tuple(int(c) for c in t) for t in itertools.product(*per_axis)]
        out_shape = tuple(hi - lo for lo, hi in block)
        origin = tuple(lo for lo, _ in block)
    weights = torch.from_numpy(np.ascontiguousarray(lat.weights)).to(x.device)
    tile = lat.tile
    acc: torch.Tensor | None = None
    for batch in _tile_batches(corners, runner.batch_size):
        inputs = []
        for corner in batch:
            if spatial_dims == 2:
                z = corner[0]
                index = torch.arange(z - half, z + half + 1).clamp(0, n0 - 1) - read[0][0]
                y0, x0 = corner[1] - read[1][0], corner[2] - read[2][0]
                inputs.append(
                    x.index_select(0, index.to(x.device))[:, y0 : y0 + tile[1], x0 : x0 + tile[2]]
                )
            else:
                sl = tuple(
                    slice(c - r[0], c - r[0] + t)
                    for c, r, t in zip(corner, read, tile, strict=True)
                )
                inputs.append(x[sl][None])
        out = runner(torch.stack(inputs))
        if spatial_dims == 2:
            out = out[:, :, None]
        if tuple(out.shape[2:]) != tile:
            raise ValueError(
                f"the network returned spatial shape {tuple(out.shape[2:])} for tiles of "
                f"shape {tile}; predict needs outputs the size of their input"
            )
        out = out * weights
        if acc is None:
            acc = torch.zeros((out.shape[1], *out_shape), device=x.device)
        for corner, value in zip(batch, out, strict=True):
            dst, src = [], []
            for c, o, size, t in zip(corner, origin, out_shape, tile, strict=True):
                lo, hi = max(c, o), min(c + t, o + size)
                dst.append(slice(lo - o, hi - o))
                src.append(slice(lo - c, hi - c))
            acc[(slice(None), *dst)] += value[(slice(None), *src)]
    assert acc is not None
    if spatial_dims == 2:
        region = ((origin[0], origin[0] + out_shape[0]), block[1], block[2])
    else:
        region = block
    total = torch.from_numpy(lat.weight_sum(region)).to(x.device)
    return acc / total


def _group_size(block: Region, slicing: Slicing, batch_size: int) -> int:
    """Slices per streamed group: a few batches' worth of tiles."""
    lat = slicing.lattice
    per_slice = len(lat.covering(1, *block[1])) * len(lat.covering(2, *block[2]))
    return max(1, (4 * batch_size) // max(per_slice, 1))


def run_block(
    net: nn.Module, stats: Any, spec: BlockSpec, block: Region, read: Region, data: Any
) -> Any:
    """The finished output of one block from its input region ``data`` (NumPy or CuPy).

    Returns the merger's result over ``block``: ``(*block)`` or ``(C, *block)``, NumPy
    (CuPy for CuPy input).
    """
    plan = spec.plan
    runner = _Runner(net, spec, _mean_std(stats))
    x = to_torch(data, runner.device).float()
    inner = tuple(slice(b0 - r0, b1 - r0) for (b0, b1), (r0, _) in zip(block, read, strict=True))
    bad = ~torch.isfinite(x[inner])
    if runner.stats is not None:
        mean, std = runner.stats
        x = (x - mean) / std
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    merger = runner.merger
    with torch.no_grad():
        if plan.spatial_dims == 2 and len(plan.slicings) == 1 and plan.slicings[0].order[0] == 0:
            slicing = plan.slicings[0]
            group = _group_size(block, slicing, spec.batch_size)
            pieces = []
            for start in range(block[0][0], block[0][1], group):
                rows = range(start, min(start + group, block[0][1]))
                mean = _slicing_mean(x, read, block, slicing, plan.context, 2, runner, rows)
                local = slice(rows.start - block[0][0], rows.stop - block[0][0])
                pieces.append(merger.finalize(mean, bad[local]))
            result = torch.cat(pieces, dim=1 if merger.per_class else 0)
        else:
            total = None
            for slicing in plan.slicings:
                xt = x.permute(slicing.order)
                mean = _slicing_mean(
                    xt,
                    slicing.permute(read),
                    slicing.permute(block),
                    slicing,
                    plan.context,
                    plan.spatial_dims,
                    runner,
                )
                mean = mean.permute((0, *(b + 1 for b in slicing.back)))
                total = mean if total is None else total + mean
            assert total is not None
            result = merger.finalize(total / len(plan.slicings), bad)
    return from_torch(result.contiguous(), like=data)


def read_from(reader: Any, read: Region) -> Any:
    """The region ``read`` of a reader (a store-backed volume)."""
    return reader[tuple(slice(lo, hi) for lo, hi in read)]


def assemble(parts: list[Any], places: list[Region], read: Region) -> Any:
    """The region ``read`` from the input chunks that overlap it (NumPy or CuPy)."""
    from xctdask.backend import array_module

    xp = array_module(*parts)
    shape = tuple(hi - lo for lo, hi in read)
    buffer = xp.empty(shape, dtype=parts[0].dtype)
    for part, (where_read, where_part) in zip(parts, places, strict=True):
        buffer[where_read] = part[where_part]
    return buffer
