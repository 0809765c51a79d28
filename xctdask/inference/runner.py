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

import contextlib
import copy
import ctypes
import functools
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

__all__ = ["BlockSpec", "cap_cuda_memory", "placed", "run_block", "tune_allocator"]

_PLACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_ALLOCATOR_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_BLOCKS_RUNNING = 0
_ALLOCATOR_LOCK = threading.Lock()


# Any of these set at start-up fixes glibc's mmap threshold (its dynamic adjustment is off
# for good); without them the threshold adapts by itself and must be left alone: glibc
# cannot switch the adjustment back on, so tuning and "restoring" a plain process would
# freeze its threshold at 128 KiB and slow every later PyTorch step in it (2.4× measured
# on a tiny U-Net after one in-process predict).
_FIXING_VARIABLES = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def _libc() -> Any:
    if not sys.platform.startswith("linux") or os.environ.get("XCTDASK_TUNE_MALLOC") == "0":
        return None
    if not any(name in os.environ for name in _FIXING_VARIABLES):
        return None  # glibc's own dynamic threshold is on: nothing to fix
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_allocator(threshold: int = 64 * 2**20) -> bool:
    """Let glibc serve the network's temporary buffers from the heap.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting that
    freezes glibc's mmap threshold at 128 KiB, so every convolution buffer is a fresh
    ``mmap`` that page-faults on first touch. Measured on this project's 2-core machine
    (``unet2d``, f0 = 16, batch 8 of 5×128×128, one thread): 0.27 s per batch in a
    worker against 0.12 s in a plain process, and 0.09 s after this call. It raises
    the mmap and trim thresholds to ``threshold`` bytes until :func:`restore_allocator`.
    Linux/glibc only, and only in a process whose threshold an environment variable
    (``MALLOC_TRIM_THRESHOLD_`` and kin) has fixed: elsewhere glibc adapts the threshold
    by itself, and a tuned-then-restored allocator would lose that for good. Set the
    environment variable ``XCTDASK_TUNE_MALLOC=0`` to leave the allocator alone.
    Returns whether the allocator is tuned.
    """
    global _ALLOCATOR_TUNED
    libc = _libc()
    if libc is None:
        return False
    try:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
        ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1
    except AttributeError:
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def restore_allocator() -> None:
    """Undo :func:`tune_allocator` and return the heap's free memory to the system.

    Left tuned, every later task of the worker (reading chunks, relabelling) kept its
    freed buffers in the heap: after inference a 1 GiB worker sat at 800 MB of
    unmanaged memory and Dask paused it for good.
    """
    global _ALLOCATOR_TUNED
    libc = _libc()
    if libc is None or not _ALLOCATOR_TUNED:
        return
    trim = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", 128 * 2**10))
    try:
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 2**10)
        libc.mallopt(_M_TRIM_THRESHOLD, trim)
        libc.malloc_trim(0)
    except AttributeError:
        return
    _ALLOCATOR_TUNED = False


@contextlib.contextmanager
def inference_allocator():
    """The tuned allocator while any inference block of this process runs."""
    global _BLOCKS_RUNNING
    with _ALLOCATOR_LOCK:
        _BLOCKS_RUNNING += 1
        if _BLOCKS_RUNNING == 1:
            tune_allocator()
    try:
        yield
    finally:
        with _ALLOCATOR_LOCK:
            _BLOCKS_RUNNING -= 1
            if _BLOCKS_RUNNING == 0:
                restore_allocator()
                release_cuda_cache()
            else:
                release_memory()


def release_memory() -> None:
    """Give the heap's free memory back to the system (tuned glibc only; ≈ 1 ms)."""
    libc = _libc()
    if libc is None or not _ALLOCATOR_TUNED:
        return
    try:
        libc.malloc_trim(0)
    except AttributeError:
        pass


def release_cuda_cache() -> bool:
    """Return PyTorch's cached, unused GPU blocks to the driver.

    PyTorch keeps freed GPU memory in its caching allocator, where neither dask-cuda's
    memory limit nor CuPy's pool can see or reuse it. Called when the last inference
    block of a process ends, so the CuPy chunks of later tasks (pseudo labels, metrics)
    find the GPU memory the network used. Returns whether anything was released.
    """
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return False
    torch.cuda.empty_cache()
    return True


_CAPPED: set[int] = set()


def cap_cuda_memory(device: torch.device, fraction: float | None = None) -> float | None:
    """Cap PyTorch's share of ``device``'s memory, once per process and device.

    ``fraction`` defaults to the environment variable ``XCTDASK_CUDA_MEMORY_FRACTION``
    (unset: no cap, PyTorch's default). With dask-cuda, set it below 1 minus the share
    the worker's CuPy/RMM chunks need, for example ``0.6`` with ``--rmm-pool-size`` at
    30 % of the GPU: PyTorch then raises an out-of-memory error inside the task
    instead of starving the pool. Returns the cap applied, or ``None``.

    Examples
    --------
    >>> cap_cuda_memory(torch.device("cpu"), 0.5) is None
    True
    """
    if device.type != "cuda":
        return None
    if fraction is None:
        value = os.environ.get("XCTDASK_CUDA_MEMORY_FRACTION")
        if not value:
            return None
        fraction = float(value)
    if not 0 < fraction <= 1:
        raise ValueError(f"the CUDA memory fraction must be in (0, 1], got {fraction}")
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CAPPED:
        torch.cuda.set_per_process_memory_fraction(fraction, index)
        _CAPPED.add(index)
    return fraction


def placed(net: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``net`` in eval mode on ``device``, made once per process and device (and the
    process's PyTorch GPU memory capped there, see :func:`cap_cuda_memory`)."""
    with _LOCK:
        per_net = _PLACED.setdefault(net, {})
        key = (str(device), channels_last)
        if key not in per_net:
            cap_cuda_memory(device)
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
        self._weight_sums: dict[tuple, torch.Tensor] = {}
        self._weights: dict[tuple, torch.Tensor] = {}

    def weights(self, slicing: Slicing) -> torch.Tensor:
        """One tile's blend weights on the device (made once per block and slicing)."""
        if slicing.order not in self._weights:
            weights = np.ascontiguousarray(slicing.lattice.weights)
            self._weights[slicing.order] = torch.from_numpy(weights).to(self.device)
        return self._weights[slicing.order]

    def weight_sum(self, slicing: Slicing, region: Region) -> torch.Tensor:
        """The lattice's weight sum over ``region``, on the device; a 2-D slicing's
        depends on the tiled axes only, so slice groups of a block share it."""
        tiled = tuple(
            r if t > 1 else (0, 1) for r, t in zip(region, slicing.lattice.tile, strict=True)
        )
        key = (slicing.order, tiled)
        if key not in self._weight_sums:
            total = slicing.lattice.weight_sum(region)
            self._weight_sums[key] = torch.from_numpy(total).to(self.device)
        return self._weight_sums[key]

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


@functools.lru_cache(maxsize=4096)
def _overlap(
    offset: tuple[int, ...], out_shape: tuple[int, ...], tile: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where a tile at ``offset`` from the output's origin overlaps the output: the
    index into the (class-leading) accumulator and into the tile's output."""
    dst, src = [slice(None)], [slice(None)]
    for c, size, t in zip(offset, out_shape, tile, strict=True):
        lo, hi = max(c, 0), min(c + t, size)
        dst.append(slice(lo, hi))
        src.append(slice(lo - c, hi - c))
    return tuple(dst), tuple(src)


def _slicing_mean(
    x: torch.Tensor,
    read: Region,
    block: Region,
    slicing: Slicing,
    context: int,
    spatial_dims: int,
    runner: _Runner,
    slices: range | None = None,
    divide: bool = True,
) -> torch.Tensor:
    """Blend-weighted mean over a block (in slicing coordinates) of one slicing.

    ``x`` is the normalised input over ``read`` (both in slicing coordinates). For a
    2-D network ``slices`` restricts the output to some slices of the block. With
    ``divide=False`` the weighted sums are returned undivided (for a scale-free
    merger: the division changes nothing it returns). Tiles are
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
    weights = runner.weights(slicing)
    tile = lat.tile
    acc: torch.Tensor | None = None
    stacks: dict[int, torch.Tensor] = {}  # a slice's context stack, shared by its tiles
    for batch in _tile_batches(corners, runner.batch_size):
        inputs = []
        for corner in batch:
            if spatial_dims == 2:
                z = corner[0]
                if z not in stacks:
                    stacks.clear()
                    rows = torch.arange(z - half, z + half + 1).clamp(0, n0 - 1) - read[0][0]
                    stacks[z] = x[rows.tolist()] if half else x[z - read[0][0]][None]
                y0, x0 = corner[1] - read[1][0], corner[2] - read[2][0]
                inputs.append(stacks[z][:, y0 : y0 + tile[1], x0 : x0 + tile[2]])
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
        if acc is None:
            acc = torch.zeros((out.shape[1], *out_shape), device=x.device)
        for corner, value in zip(batch, out, strict=True):
            offset = tuple(c - o for c, o in zip(corner, origin, strict=True))
            dst, src = _overlap(offset, out_shape, tile)
            # acc += value · weight over the overlap, in one pass
            acc[dst].addcmul_(value[src], weights[src[1:]])
    assert acc is not None
    if not divide:
        return acc
    if spatial_dims == 2:
        region = ((origin[0], origin[0] + out_shape[0]), block[1], block[2])
    else:
        region = block
    return acc.div_(runner.weight_sum(slicing, region))


def _group_size(block: Region, slicing: Slicing, batch_size: int) -> int:
    """Slices per streamed group: a few batches' worth of tiles."""
    lat = slicing.lattice
    per_slice = len(lat.covering(1, *block[1])) * len(lat.covering(2, *block[2]))
    return max(1, (4 * batch_size) // max(per_slice, 1))


def run_block(
    net: nn.Module, stats: Any, spec: BlockSpec, block: Region, read: Region, data: Any
) -> Any:
    """The finished output of one block from its input region ``data`` (NumPy or CuPy,
    a buffer of this task's own: it may be normalised in place).

    Returns the merger's result over ``block``: ``(*block)`` or ``(C, *block)``, NumPy
    (CuPy for CuPy input).
    """
    with inference_allocator():
        return _run_block(net, stats, spec, block, read, data)


def _normalised(x: torch.Tensor, stats: tuple[float, float] | None) -> torch.Tensor:
    """``x`` as float32, normalised with ``stats``, non-finite voxels set to 0 (in place
    when ``x`` is already float32)."""
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    if stats is not None:
        mean, std = stats
        x.sub_(mean).div_(std)
    return torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)


class _NormalisedSlices:
    """Normalised slices of a region (its first axis), made when first asked for and
    kept while later slice groups may still need them (their 2.5D context).

    Indexing takes a slice number or a list of them, like a tensor's first axis.
    Normalising slice by slice keeps the float32 copy of the region to a few slices,
    warm in cache when the tiles are cut from it, instead of a whole-region pass.
    """

    def __init__(self, raw: torch.Tensor, stats: tuple[float, float] | None):
        self.raw = raw
        self.stats = stats
        self.device = raw.device
        self.cache: dict[int, torch.Tensor] = {}

    def _slice(self, z: int) -> torch.Tensor:
        if z not in self.cache:
            raw = self.raw[z]
            copy_ = raw.clone() if raw.dtype == torch.float32 else raw
            self.cache[z] = _normalised(copy_, self.stats)
        return self.cache[z]

    def __getitem__(self, rows: int | list[int]) -> torch.Tensor:
        first = rows if isinstance(rows, int) else min(rows)
        for old in [z for z in self.cache if z < first]:
            del self.cache[old]  # slice groups move forward: earlier slices are done
        if isinstance(rows, int):
            return self._slice(rows)
        return torch.stack([self._slice(z) for z in rows])


def _run_block(
    net: nn.Module, stats: Any, spec: BlockSpec, block: Region, read: Region, data: Any
) -> Any:
    plan = spec.plan
    runner = _Runner(net, spec, _mean_std(stats))
    # ``data`` is this task's own fresh buffer (read or assembled): it is normalised in
    # place (float32 input) or into one float32 copy, whole or slice by slice (streamed)
    x = to_torch(data, runner.device)
    bad = None  # integer scans have no non-finite voxels: skip the check (≈ 5 ms/Mvox)
    if x.dtype.is_floating_point:
        inner = tuple(
            slice(b0 - r0, b1 - r0) for (b0, b1), (r0, _) in zip(block, read, strict=True)
        )
        bad = ~torch.isfinite(x[inner])
        bad = bad if bool(bad.any()) else None
    merger = runner.merger
    streamed = plan.spatial_dims == 2 and len(plan.slicings) == 1 and plan.slicings[0].order[0] == 0
    if streamed:  # slices are normalised as the slice groups reach them (cache-warm)
        x = _NormalisedSlices(x, runner.stats)
    else:
        x = _normalised(x, runner.stats)
    with torch.no_grad():
        if streamed:
            slicing = plan.slicings[0]
            group = _group_size(block, slicing, spec.batch_size)
            pieces = []
            for start in range(block[0][0], block[0][1], group):
                rows = range(start, min(start + group, block[0][1]))
                mean = _slicing_mean(
                    x, read, block, slicing, plan.context, 2, runner, rows, not merger.scale_free
                )
                local = slice(rows.start - block[0][0], rows.stop - block[0][0])
                pieces.append(merger.finalize(mean, None if bad is None else bad[local]))
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
