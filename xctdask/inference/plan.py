"""The splitter of ``predict``: inference blocks, what each reads, which tiles it runs.

``predict`` makes **one task per inference block**. A block is a union of whole input
chunks (so reads and the later writes stay aligned with the storage); its task reads
the block plus the halo its tiles and 2.5D context need (straight from the store when
the volume comes from a store), runs every tile of the global lattice that touches
the block, and keeps only its own region. Tiles that straddle a block border are run
by both neighbours: along a tiled axis a block of ``B`` voxels runs about
``1 + overlap·tile / B`` times the lattice's own tiles, so blocks are grown along tiled
axes until that *redundancy* (the product over tiled axes) is at most
:data:`REDUNDANCY_GOAL`, within a memory budget.

Examples
--------
>>> plan = InferencePlan.build((64, 2048, 2048), ((64,), (256,) * 8, (256,) * 8),
...                            spatial_dims=2, context=7, tile=(1, 256, 256), overlap=0.5,
...                            blend="gaussian", axes="z", channels=3)
>>> plan.blocks[1][:2], round(plan.redundancy, 3)
((1024, 1024), 1.138)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from xctdask.inference.lattice import Lattice

__all__ = ["PRECISIONS", "REDUNDANCY_GOAL", "InferencePlan", "Slicing"]

#: Autocast precisions of the runner ("auto": bf16 on a GPU, fp32 on a CPU).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

Region = tuple[tuple[int, int], ...]

#: Network voxels per output voxel, relative to the lattice's own, that blocks aim at.
REDUNDANCY_GOAL = 1.3
#: Voxels of one block read and kept as float32 (about 1 GiB per task with its output).
SINGLE_SLICING_VOXELS = 2**27
#: Bytes of float32 accumulators of a block computed as a whole (3-D or tri-planar).
ACCUMULATOR_BYTES = 2**30
#: Bytes a block task holds at its peak per voxel of its region: the input (up to
#: float64), its float32 copy, masks, a slice group's accumulators, allocator slack
#: (measured: 21 for float64 input and a small U-Net).
BYTES_PER_VOXEL = 24

_AXES = "zyx"


@dataclass(frozen=True)
class Slicing:
    """One way to cut the volume into network inputs.

    ``order`` permutes ``(z, y, x)`` to slicing coordinates (the slice axis first for a
    2-D network; the identity for a 3-D one); ``lattice`` is built on the permuted
    shape; ``back`` undoes the permutation.
    """

    order: tuple[int, int, int]
    lattice: Lattice

    @property
    def back(self) -> tuple[int, int, int]:
        return tuple(self.order.index(i) for i in range(3))  # type: ignore[return-value]

    def permute(self, region: Region) -> Region:
        return tuple(region[a] for a in self.order)


def _starts(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _merge_chunks(chunks: tuple[int, ...], target: int) -> tuple[int, ...]:
    """Group consecutive chunks into blocks of at least ``target`` voxels."""
    if target <= 0:
        return tuple(int(c) for c in chunks)
    blocks: list[int] = []
    size = 0
    for c in chunks:
        size += int(c)
        if size >= target:
            blocks.append(size)
            size = 0
    if size:
        if blocks and size < target / 2:
            blocks[-1] += size  # a thin remainder joins its neighbour
        else:
            blocks.append(size)
    return tuple(blocks)


@dataclass(frozen=True)
class InferencePlan:
    """Blocks, slicings and lattices of one ``predict`` call (shared by its tasks)."""

    shape: tuple[int, int, int]
    spatial_dims: int
    context: int
    slicings: tuple[Slicing, ...]
    blocks: tuple[tuple[int, ...], ...]

    @classmethod
    def build(
        cls,
        shape: tuple[int, ...],
        chunks: tuple[tuple[int, ...], ...],
        *,
        spatial_dims: int,
        context: int,
        tile: tuple[int, int, int],
        overlap: float,
        blend: str,
        axes: str,
        channels: int,
        block: tuple[int, int, int] | None = None,
        worker_memory: int | None = None,
    ) -> InferencePlan:
        """Plan ``predict`` on a volume of ``shape`` stored in ``chunks``.

        ``tile`` is in slicing coordinates: ``(1, ty, tx)`` for a 2-D network, ``(tz,
        ty, tx)`` for a 3-D one. ``block`` forces the block size (voxels per axis,
        rounded to whole input chunks); by default it is chosen as described in the
        module docstring, within an eighth of ``worker_memory`` bytes per task when given
        (a block task holds about :data:`BYTES_PER_VOXEL` bytes per voxel of its region).
        """
        shape = tuple(int(s) for s in shape)
        slicings = []
        for axis in axes if spatial_dims == 2 else "z":
            a = _AXES.index(axis)
            order = (a, *[i for i in range(3) if i != a]) if spatial_dims == 2 else (0, 1, 2)
            permuted = tuple(shape[i] for i in order)
            slicings.append(Slicing(order, Lattice.build(permuted, tile, overlap, blend)))
        if block is not None:
            targets = [int(b) for b in block]
        else:
            targets = cls._targets(
                shape, chunks, slicings, overlap, channels, spatial_dims, worker_memory
            )
        merged = tuple(_merge_chunks(c, t) for c, t in zip(chunks, targets, strict=True))
        return cls(shape, spatial_dims, context, tuple(slicings), merged)

    @staticmethod
    def _targets(
        shape, chunks, slicings, overlap, channels, spatial_dims, worker_memory
    ) -> list[int]:
        """Block extent per axis: the redundancy goal, then the memory budget."""
        tiled: dict[int, int] = {}
        per_slicing = 0
        for s in slicings:
            axes = [s.order[i] for i, t in enumerate(s.lattice.tile) if t > 1]
            per_slicing = max(per_slicing, len(axes))
            for i, a in enumerate(s.order):
                t = s.lattice.tile[i]
                if t > 1:
                    tiled[a] = max(tiled.get(a, 0), t)
        if not tiled:
            return [0, 0, 0]
        factor = REDUNDANCY_GOAL ** (1 / per_slicing) - 1
        targets = [0, 0, 0]
        for a, t in tiled.items():
            excess = max(1, round(overlap * t))
            targets[a] = min(shape[a], max(2 * t, math.ceil(excess / factor)))
        if spatial_dims == 2 and len(slicings) == 1:
            budget = SINGLE_SLICING_VOXELS  # streamed slice group by slice group
        else:
            budget = ACCUMULATOR_BYTES // (4 * (channels + 2))
        if worker_memory:  # an eighth of a worker's memory for one block task: the
            # worker itself (torch, dask, zarr) takes ~350 MB of it
            budget = min(budget, worker_memory // (8 * BYTES_PER_VOXEL))
        # untiled axes keep their input chunks
        fixed = math.prod(max(chunks[a]) for a in range(3) if a not in tiled)
        # within the memory budget, down to one tile per axis (more re-run tiles, but a
        # block must fit its worker)
        while math.prod(t for t in targets if t) * fixed > budget:
            a = max(tiled, key=lambda i: targets[i])
            if targets[a] <= tiled[a]:
                break
            targets[a] = max(tiled[a], targets[a] // 2)
        return targets

    # ----------------------------------------------------------------- blocks
    @cached_property
    def bounds(self) -> tuple[np.ndarray, ...]:
        return tuple(_starts(b) for b in self.blocks)

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.blocks)

    def block_region(self, index: tuple[int, ...]) -> Region:
        return tuple((int(b[i]), int(b[i + 1])) for b, i in zip(self.bounds, index, strict=True))

    def read_region(self, block: Region) -> Region:
        """The input region a block needs: its tiles (over every slicing) and, along a
        2-D network's slice axis, the context slices (clipped to the volume; slices
        beyond the ends are replicated by the runner)."""
        lows, highs = [lo for lo, _ in block], [hi for _, hi in block]
        half = (self.context - 1) // 2 if self.spatial_dims == 2 else 0
        for s in self.slicings:
            permuted = s.permute(block)
            for i, a in enumerate(s.order):
                lo, hi = permuted[i]
                if s.lattice.tile[i] > 1:
                    starts = s.lattice.covering(i, lo, hi)
                    lo, hi = int(starts.min()), int(starts.max()) + s.lattice.tile[i]
                elif self.spatial_dims == 2:
                    lo, hi = max(0, lo - half), min(self.shape[a], hi + half)
                lows[a], highs[a] = min(lows[a], lo), max(highs[a], hi)
        return tuple(zip(lows, highs, strict=True))

    def tiles_run(self, block: Region) -> int:
        """Network tiles a block's task runs (over every slicing)."""
        total = 0
        for s in self.slicings:
            permuted = s.permute(block)
            count = 1
            for i, (lo, hi) in enumerate(permuted):
                count *= len(s.lattice.covering(i, lo, hi))
            total += count
        return total

    @cached_property
    def lattice_tiles(self) -> int:
        """Tiles of the lattices themselves (over every slicing)."""
        return sum(s.lattice.n_tiles for s in self.slicings)

    @cached_property
    def redundancy(self) -> float:
        """Tiles run by all blocks over the lattices' own tiles (≥ 1).

        Per slicing the count factorises over axes, so this costs one pass over the
        blocks of each axis, not over all blocks.
        """
        run = 0
        for s in self.slicings:
            count = 1
            for i, a in enumerate(s.order):
                b = self.bounds[a]
                count *= sum(
                    len(s.lattice.covering(i, int(b[k]), int(b[k + 1]))) for k in range(len(b) - 1)
                )
            run += count
        return run / self.lattice_tiles
