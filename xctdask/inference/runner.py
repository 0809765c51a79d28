"""What runs on a worker: one chunk's tiles through the network, and the blend.

:func:`run_tiles` evaluates the tiles a chunk *owns* (those whose start lies in the
chunk) and returns their weighted outputs cut into pieces, one per output chunk they
reach. :func:`blend_chunk` adds the pieces that reach one output chunk and divides by
the lattice's weight sum there. The network arrives as task data (sent to each worker
once) and is placed on the worker's device once per process (:func:`placed`).
"""

from __future__ import annotations

import copy
import ctypes
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xctdask.inference.lattice import Lattice

__all__ = ["BlendSpec", "TileSpec", "blend_chunk", "placed", "run_tiles", "tune_allocator"]

Region = tuple[tuple[int, int], ...]

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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
class TileSpec:
    """Everything one chunk's :func:`run_tiles` task needs besides data."""

    lattice: Lattice
    spatial_dims: int  # 2: slices along axis 0 with ``context`` channels; 3: volume tiles
    context: int
    mode: str  # "softmax", "logits" or "denoised"
    chunk: Region  # the chunk whose tiles this task owns
    read: Region  # the input region the parts fill (chunk's tiles plus context halo)
    extent: Region  # the output region the owned tiles cover
    parts: tuple[Region, ...]  # where each input part goes, relative to ``read``
    destinations: tuple[Region, ...]  # output chunks reached, each ∩ extent (global)
    batch_size: int
    device: str
    precision: str
    channels_last: str


def _assemble(spec: TileSpec, parts: list[Any]) -> tuple[torch.Tensor, bool]:
    """The input region as a float32 tensor; CuPy parts go through DLPack, no host copy."""
    shape = tuple(hi - lo for lo, hi in spec.read)
    on_gpu = any(type(p).__module__.split(".")[0] == "cupy" for p in parts)
    if on_gpu:
        pieces = [torch.from_dlpack(p) for p in parts]
        buffer = torch.empty(shape, dtype=torch.float32, device=pieces[0].device)
    else:
        pieces = [torch.from_numpy(np.asarray(p)) for p in parts]
        buffer = torch.empty(shape, dtype=torch.float32)
    for where, piece in zip(spec.parts, pieces, strict=True):
        buffer[tuple(slice(lo, hi) for lo, hi in where)] = piece.to(torch.float32)
    return buffer, on_gpu


def _mean_std(stats: Any) -> tuple[float, float]:
    mean, std = (float(v) for v in np.asarray(stats).ravel()[:2])
    return mean, std


def _normalised(x: torch.Tensor, stats: Any) -> torch.Tensor:
    if stats is not None:
        mean, std = _mean_std(stats)
        x = (x - mean) / std
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _denormalised(x: torch.Tensor, stats: Any) -> torch.Tensor:
    """Back to the input's grey values (the blend is a weighted mean, so per tile is exact)."""
    if stats is None:
        return x
    mean, std = _mean_std(stats)
    return x * std + mean


def _tile_corners(spec: TileSpec) -> np.ndarray:
    lat = spec.lattice
    owned = [lat.owned(a, lo, hi) for a, (lo, hi) in enumerate(spec.chunk)]
    return np.stack(np.meshgrid(*owned, indexing="ij"), -1).reshape(-1, len(owned))


def run_tiles(net: nn.Module, spec: TileSpec, parts: list[Any], stats: Any) -> list[Any]:
    """Evaluate the chunk's owned tiles, batched; return the weighted outputs per piece.

    Returns one ``(channels, *piece_shape)`` float32 array per destination in
    ``spec.destinations`` (NumPy, or CuPy when the input chunks were CuPy).
    """
    tune_allocator()
    device = resolve_device(spec.device)
    x, on_gpu = _assemble(spec, parts)
    x = _normalised(x.to(device), stats)
    half = (spec.context - 1) // 2 if spec.spatial_dims == 2 else 0
    if half:  # edge-replicate context slices beyond the volume's ends
        before = spec.read[0][0] - (spec.chunk[0][0] - half)
        after = spec.chunk[0][1] + half - spec.read[0][1]
        x = F.pad(x[None, None], (0, 0, 0, 0, before, after), mode="replicate")[0, 0]
    origin = [lo for lo, _ in spec.read]  # global index of the buffer's first voxel
    if spec.spatial_dims == 2:
        origin[0] = spec.chunk[0][0] - half
    precision = spec.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    dtype = _PRECISIONS[precision]
    channels_last = spec.channels_last == "on" or (
        spec.channels_last == "auto" and device.type == "cuda" and spec.spatial_dims == 2
    )
    module = placed(net, device, channels_last)
    lat = spec.lattice
    weights = torch.from_numpy(lat.weights).to(device)
    extent_shape = [hi - lo for lo, hi in spec.extent]
    accum: torch.Tensor | None = None
    corners = _tile_corners(spec)
    depth = spec.context if spec.spatial_dims == 2 else lat.tile[0]
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for first in range(0, len(corners), spec.batch_size):
            batch = corners[first : first + spec.batch_size]
            tiles = []
            for corner in batch:
                z = int(corner[0]) - half - origin[0]  # half is 0 in 3-D
                sl = [slice(z, z + depth)] + [
                    slice(int(c) - o, int(c) - o + t)
                    for c, o, t in zip(corner[1:], origin[1:], lat.tile[1:], strict=True)
                ]
                tiles.append(x[tuple(sl)])
            inp = torch.stack(tiles)
            if spec.spatial_dims == 3:
                inp = inp[:, None]
            if channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            out = _select(module(inp), spec.mode)
            if spec.mode == "denoised":
                out = _denormalised(out, stats)
            if spec.spatial_dims == 2:
                out = out[:, :, None]
            if tuple(out.shape[2:]) != lat.tile:
                raise ValueError(
                    f"the network returned spatial shape {tuple(out.shape[2:])} for tiles "
                    f"of shape {lat.tile}; predict needs outputs the size of their input"
                )
            out = out * weights
            if accum is None:
                accum = torch.zeros([out.shape[1], *extent_shape], device=device)
            for corner, value in zip(batch, out, strict=True):
                sl = tuple(
                    slice(int(c) - lo, int(c) - lo + t)
                    for c, (lo, _), t in zip(corner, spec.extent, lat.tile, strict=True)
                )
                accum[(slice(None), *sl)] += value
    assert accum is not None
    pieces = []
    for dest in spec.destinations:
        sl = tuple(slice(a - lo, b - lo) for (a, b), (lo, _) in zip(dest, spec.extent, strict=True))
        piece = accum[(slice(None), *sl)].contiguous()
        if on_gpu:
            import cupy

            pieces.append(cupy.from_dlpack(piece))
        else:
            pieces.append(piece.cpu().numpy())
    return pieces


def _select(out: Any, mode: str) -> torch.Tensor:
    """The network output that ``mode`` averages, as float32."""
    if isinstance(out, tuple):
        denoised, logits = out
        out = denoised if mode == "denoised" else logits
    out = out.float()
    if mode == "softmax":
        return torch.softmax(out, dim=1)
    return out


@dataclass(frozen=True)
class BlendSpec:
    """One output chunk: its region and where each incoming piece lands in it."""

    lattice: Lattice
    chunk: Region
    pieces: tuple[Region, ...]  # relative to ``chunk``
    channels: int
    reduce: str  # "labels", "confidence", "probabilities", "squeeze" or "none"


def blend_chunk(pieces: list[Any], spec: BlendSpec, source: Any) -> Any:
    """Average the weighted outputs over an output chunk and reduce them.

    ``source`` is the input chunk: voxels that are not finite there come out as 255
    (labels) or NaN (everything else).
    """
    xp = np
    if pieces and type(pieces[0]).__module__.split(".")[0] == "cupy":
        import cupy as xp
    shape = tuple(hi - lo for lo, hi in spec.chunk)
    total = xp.zeros((spec.channels, *shape), dtype=np.float32)
    for where, piece in zip(spec.pieces, pieces, strict=True):
        total[(slice(None), *(slice(lo, hi) for lo, hi in where))] += piece
    total /= xp.asarray(spec.lattice.weight_sum(spec.chunk))
    bad = ~xp.isfinite(xp.asarray(source))
    return finish(total, spec.reduce, bad)


def finish(values: Any, reduce: str, bad: Any) -> Any:
    """Reduce averaged ``(channels, …)`` values to the requested output."""
    if reduce == "labels":
        labels = values.argmax(axis=0).astype(np.uint8)
        labels[bad] = 255
        return labels
    if reduce == "confidence":
        out = values.max(axis=0)
    elif reduce == "squeeze":
        out = values[0]
    else:
        out = values
    out[..., bad] = np.nan
    return out
