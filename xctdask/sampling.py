"""``PatchSampler``: class-balanced training patches cut from volumes larger than memory.

One lazy pass over the labels (the documented compute at construction) records, per
chunk, the voxel count of every class and a small random reservoir of voxel positions
of each class (unlabelled voxels, 255, never enter a reservoir). Drawing a patch then
needs no data: pick a class (uniformly among those present with ``balance=True``, in
proportion to their counts otherwise), a chunk in proportion to that class's count
there, a position from the chunk's reservoir, and a random offset that keeps the voxel
inside the patch. Cutting the patches is a Dask computation on the workers that hold
or can read the chunks; batches are prefetched so training does not wait.

Splits are slabs along z: train, validation and test, in that order, separated by
``margin`` slices, and no patch footprint (including the 2.5D context) crosses its slab,
so no voxel of one split can be seen by another (the Modular U-Net paper separated its
slabs by 86 slices).

Examples
--------
>>> import numpy as np
>>> image = np.random.default_rng(0).random((40, 32, 32), dtype=np.float32)
>>> labels = (image > 0.5).astype(np.uint8)
>>> sampler = PatchSampler(image, labels, patch=(1, 16, 16), context=3, margin=4, seed=0)
>>> batch = next(sampler.batches("train", batch_size=4))
>>> tuple(batch["image"].shape), tuple(batch["target"].shape)
((4, 3, 16, 16), (4, 16, 16))
"""

from __future__ import annotations

import itertools
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import torch

from xctdask._progress import compute
from xctdask.backend import (
    UNLABELLED,
    as_dask,
    check_mean_std,
    check_same_shape,
    to_host,
    unwrap,
    validate_volume,
)
from xctdask.cluster import active_client
from xctdask.regions import InMemory, bind, cut_patches, describe, source_of

__all__ = ["PARTS", "PatchSampler"]

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class _CellStats:
    """One cell (a storage chunk, or a Dask chunk): its box, and per class the voxel
    count and a reservoir of global positions."""

    box: tuple[tuple[int, int], ...]
    counts: np.ndarray  # (n_classes,)
    positions: dict  # class -> (k, 3) int64 global (z, y, x)


def _cell_boxes(
    location: tuple[tuple[int, int], ...], cell: tuple[int, ...]
) -> list[tuple[tuple[int, int], ...]]:
    """The boxes of the global ``cell`` grid (aligned to multiples of ``cell``) that
    cut the block at ``location``."""
    edges = []
    for (lo, hi), size in zip(location, cell, strict=True):
        inner = range((lo // size + 1) * size, hi, size)
        bounds = [lo, *inner, hi]
        edges.append(list(itertools.pairwise(bounds)))
    return list(itertools.product(*edges))


def _chunk_stats(
    target: np.ndarray, reservoir: int, seed: int, box: tuple[tuple[int, int], ...]
) -> _CellStats:
    """Counts per class and up to ``reservoir`` uniformly drawn positions per class.

    Positions come from random probes of the cell (a few reservoirs' worth); only a
    class too rare to fill its reservoir that way is searched voxel by voxel, so a cell
    costs about one pass (the counts), not one pass per class.
    """
    t = np.asarray(target)
    flat = t.ravel()
    if flat.size and np.dtype(flat.dtype).kind == "i" and flat.min() < 0:
        raise ValueError(f"target holds label {flat.min()}, outside 0..254 (255 = unlabelled)")
    if flat.size and flat.max() > UNLABELLED:
        raise ValueError(f"target holds label {flat.max()}, outside 0..254 (255 = unlabelled)")
    every = np.bincount(flat, minlength=UNLABELLED + 1)[:UNLABELLED]
    present = np.flatnonzero(every)
    # as long as the largest label here; the range check against n_classes is global
    counts = every[: present[-1] + 1] if present.size else every[:0]
    rng = np.random.default_rng(seed)
    origin = np.array([lo for lo, _ in box])
    probes = rng.integers(0, flat.size, min(flat.size, 8 * reservoir * max(1, present.size)))
    probed = flat[probes]
    positions = {}
    for c in present:
        idx = np.unique(probes[probed == c])
        if idx.size < min(reservoir, every[c]):  # rare here: search it exactly
            idx = np.flatnonzero(flat == c)
        if idx.size > reservoir:
            idx = rng.choice(idx, reservoir, replace=False)
        positions[int(c)] = np.stack(np.unravel_index(idx, t.shape), axis=1) + origin
    return _CellStats(box, counts, positions)


def _stats_cell(target, reservoir, seed, cell, block_info=None):
    info = block_info[0]
    location = tuple(info["array-location"])
    stats = []
    for box in _cell_boxes(location, cell):
        local = tuple(slice(lo - o, hi - o) for (lo, hi), (o, _) in zip(box, location, strict=True))
        cell_seed = np.random.SeedSequence([seed, *(lo for lo, _ in box)]).generate_state(1)[0]
        stats.append(_chunk_stats(to_host(target[local]), reservoir, int(cell_seed), box))
    out = np.empty((1,) * target.ndim, dtype=object)
    out[(0,) * target.ndim] = stats
    return out


class PatchSampler:
    """Draw 2D, 2.5D or 3D training patches from NumPy, Dask or Zarr-backed volumes.

    Parameters
    ----------
    image : array-like (z, y, x)
        The scan (any real dtype; patches come out as float32).
    target : array-like of integer labels, optional
        Dense, sparse (255 where unlabelled) or pseudo labels, same shape as ``image``.
        Without a target, patch centres are drawn uniformly (for denoising).
    clean : array-like, optional
        A high-quality scan aligned with ``image``: the denoising target.
    patch : (pz, py, px)
        ``pz = 1`` for slice patches (2D, or 2.5D with ``context``); ``pz > 1`` for 3D.
    context : int
        Odd number of adjacent slices stacked as channels (2.5D); 1 for 2D and 3D.
    balance : bool
        Draw classes uniformly among those present (True) or as they occur.
    split : (float, float, float)
        Fractions of the slices (after the margins) for train, validation, test.
    margin : int, optional
        Slices between neighbouring slabs; default: the patch footprint depth.
    n_classes : int, optional
        Number of classes; default ``max(target) + 1`` over labelled voxels.
    normalize : (float, float), optional
        ``(mean, std)``: patches become ``(x - mean) / std``. Use one global pair (e.g.
        from the histogram pass), never per patch.
    reservoir : int
        Positions kept per class and chunk.
    seed : int
        Root of every random choice (a ``numpy.random.SeedSequence``).
    patches_per_read : int
        Patches cut from one region read (one task): more amortise each read, fewer
        mix more places of the volume into a batch.
    shuffle : int
        Patches drawn and shuffled together (a round, rounded to whole batches): the
        training process holds up to two rounds in memory.
    cell : (int, int, int), optional
        The grid of places a read is centred on; default: the store's chunks
        (``attrs["storage_chunks"]``) or else the Dask chunks.
    threads : int
        Reading threads when there is no cluster (or the inputs are in memory).
    progress : bool
        Show progress for the statistics pass.
    target_name : str
        What the target is, for people ("annotations", "pseudo labels", "ground
        truth"): training histories say what they were validated against.

    The constructor **computes** one pass over ``target`` (class counts and positions).
    """

    def __init__(
        self,
        image: Any,
        target: Any = None,
        *,
        clean: Any = None,
        patch: tuple[int, int, int] = (1, 256, 256),
        context: int = 1,
        balance: bool = True,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        margin: int | None = None,
        n_classes: int | None = None,
        normalize: tuple[float, float] | None = None,
        reservoir: int = 64,
        seed: int = 0,
        patches_per_read: int = 16,
        shuffle: int = 128,
        cell: tuple[int, int, int] | None = None,
        threads: int = 4,
        progress: bool = False,
        target_name: str = "labels",
    ):
        validate_volume(image, name="image")
        for other, name in ((target, "target"), (clean, "clean")):
            if other is not None:
                validate_volume(other, name=name)
                check_same_shape(other, image, (name, "image"))
        if np.ndim(patch) != 1 or len(patch) != 3 or min(int(p) for p in patch) < 1:
            raise ValueError(
                f"patch must be three positive sizes (z, y, x), e.g. (1, {patch}, {patch}) "
                f"for slices, got {patch!r}"
                if np.ndim(patch) == 0
                else f"patch must be three positive sizes (z, y, x), got {patch!r}"
            )
        patch = tuple(int(p) for p in patch)
        if not isinstance(context, int) or context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd integer, got {context!r}")
        if patch[0] > 1 and context > 1:
            raise ValueError("context (2.5D) needs slice patches: use patch=(1, py, px)")
        shape = tuple(unwrap(image).shape)
        if any(p > s for p, s in zip(patch[1:], shape[1:], strict=True)):
            raise ValueError(f"patch {patch} is larger than the volume {shape}")
        if len(split) != 3 or min(split) < 0 or not np.isclose(sum(split), 1.0):
            raise ValueError(
                f"split must be three non-negative fractions summing to 1, got {split!r}"
            )
        for value, name in ((patches_per_read, "patches_per_read"), (shuffle, "shuffle")):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        if not isinstance(reservoir, (int, np.integer)) or reservoir < 1:
            raise ValueError(f"reservoir must be a positive integer, got {reservoir!r}")
        if margin is not None and (not isinstance(margin, (int, np.integer)) or margin < 0):
            raise ValueError(  # a negative margin overlaps the slabs: leaks test into train
                f"margin must be a non-negative number of slices, got {margin!r}"
            )
        if normalize is not None:
            check_mean_std(normalize)
        self.shape = shape
        self.patch, self.context, self.balance = patch, context, balance
        self.patches_per_read, self.shuffle, self.threads = patches_per_read, shuffle, threads
        self.normalize = normalize
        self.seed = seed
        self.target_name = target_name
        self._validation_cache: dict[tuple, list] = {}
        self._streams: weakref.WeakSet = weakref.WeakSet()
        self.image = as_dask(image)
        self.target = None if target is None else as_dask(target).rechunk(self.image.chunks)
        self.clean = None if clean is None else as_dask(clean).rechunk(self.image.chunks)
        # how each volume's regions are read: from the store, computed from the image's
        # region (pseudo labels), in memory, or through the Dask graph
        self._sources = {"image": source_of(image)}
        for role, value in (("target", target), ("clean", clean)):
            if value is not None:
                self._sources[role] = source_of(value, {"image": image})
        # in-memory inputs are cut here: a cluster would receive their chunks every batch
        self.in_memory = all(isinstance(s, InMemory) for s in self._sources.values())
        self.cell = self._cell_shape(image, cell)
        self._grid = _cell_boxes(tuple((0, n) for n in shape), self.cell)
        depth = patch[0] if patch[0] > 1 else context
        self.margin = depth if margin is None else int(margin)
        self.slabs = self._slabs(split, depth)
        self.n_classes = n_classes
        self._stats: list[_CellStats] = []
        self._candidate_cache: dict[str, dict] = {}
        if self.target is not None:
            if np.dtype(self.target.dtype).kind not in "iu":
                raise TypeError(f"target must hold integer labels, got {self.target.dtype}")
            self._collect(reservoir, progress)

    def _cell_shape(self, image: Any, cell: Any) -> tuple[int, int, int]:
        if cell is None:
            stored = getattr(image, "attrs", {}).get("storage_chunks")
            if stored is not None and len(stored) == 3:
                cell = tuple(stored)
            else:
                cell = tuple(max(c) for c in self.image.chunks)
        cell = tuple(int(c) for c in cell)
        if len(cell) != 3 or min(cell) < 1:
            raise ValueError(f"cell must be three positive sizes (z, y, x), got {cell!r}")
        return cell

    def close(self) -> None:
        """Stop every batch stream of this sampler: what is in flight is cancelled."""
        for stream in list(self._streams):
            stream.close()

    def __enter__(self) -> PatchSampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------- splits
    def _slabs(self, split, depth: int) -> dict[str, tuple[int, int]]:
        nz = self.shape[0]
        parts_used = sum(1 for f in split if f > 0)
        usable = nz - self.margin * max(parts_used - 1, 0)  # margins only between slabs
        if usable < depth * parts_used and parts_used > 1:
            raise ValueError(
                f"the volume has {nz} slices: too few for z slabs {split} (train, "
                f"validation, test) of at least {depth} slices each (the patch depth"
                f"{' with its 2.5D context' if self.patch[0] == 1 else ''}) separated by "
                f"{self.margin} slices. Train without validation (split=(1, 0, 0)), use a "
                "smaller context or margin, or let xd.Segmenter choose"
            )
        sizes = [round(f * usable) for f in split]
        sizes[0] = usable - sizes[1] - sizes[2]
        slabs, start = {}, 0
        for part, size in zip(PARTS, sizes, strict=True):
            slabs[part] = (start, start + size)
            start += size + (self.margin if size else 0)
        for part, (a, b) in slabs.items():
            if 0 < b - a < depth and parts_used > 1:
                raise ValueError(
                    f"the {part} slab would have {b - a} slices, fewer than the patch depth "
                    f"{depth}: give the {part} part a larger fraction of split={split}, use "
                    "a smaller context, or train without validation (split=(1, 0, 0))"
                )
        return slabs

    def has_labels(self, part: str) -> bool:
        """Whether any labelled voxel can centre a patch of ``part`` (True without a
        target, where every voxel can)."""
        lo, hi = self.centre_range(part)
        if hi <= lo:
            return False
        if self.target is None:
            return True
        return any(self._candidates(part, c) for c in range(self.n_classes))

    def centre_range(self, part: str) -> tuple[int, int]:
        """Slices where a patch of ``part`` may start (3D) or be centred (2D/2.5D)."""
        a, b = self.slabs[self._check_part(part)]
        if self.patch[0] > 1:
            return a, b - self.patch[0] + 1
        half = (self.context - 1) // 2
        # at the volume's ends the context repeats the end slice, as predict does, so
        # every slice can centre a patch; inside the volume the context stays in the slab
        return (a + half if a > 0 else a), (b - half if b < self.shape[0] else b)

    def footprint(self, part: str) -> tuple[int, int]:
        """First and one-past-last slice any patch of ``part`` can touch."""
        return self.slabs[self._check_part(part)]

    @staticmethod
    def _check_part(part: str) -> str:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return part

    # ------------------------------------------------------------- statistics
    def _collect(self, reservoir: int, progress: bool) -> None:
        """The one pass over the target: counts and reservoirs per cell; ``n_classes``."""
        cells = da.map_blocks(
            _stats_cell,
            self.target,
            reservoir,
            self.seed,
            self.cell,
            chunks=tuple((1,) * len(c) for c in self.target.chunks),
            dtype=object,
            meta=np.empty((0, 0, 0), dtype=object),
        )
        (table,) = compute(cells, progress=progress, description="class counts per chunk")
        stats = [cell for block in np.asarray(table).ravel() for cell in block]
        found = max(s.counts.size for s in stats)  # largest label + 1
        if found == 0:
            raise ValueError("the target has no labelled voxel (everything is 255)")
        n_classes = found if self.n_classes is None else self.n_classes
        if not 1 <= n_classes <= 255:
            raise ValueError(f"n_classes must be in 1..255, got {n_classes}")
        if found > n_classes:
            raise ValueError(
                f"target holds label {found - 1}, outside 0..{n_classes - 1} (255 = unlabelled)"
            )
        self.n_classes = n_classes
        self._stats = [
            _CellStats(s.box, np.pad(s.counts, (0, n_classes - s.counts.size)), s.positions)
            for s in stats
        ]
        self.class_counts = np.sum([s.counts for s in self._stats], axis=0)
        if not self.class_counts.any():
            raise ValueError("the target has no labelled voxel (everything is 255)")

    # --------------------------------------------------------------- drawing
    def _candidates(self, part: str, c: int):
        """(cell index, positions, share) of the cells with class ``c`` centres inside
        the part; ``share`` estimates the class's voxel count there."""
        lo, hi = self.centre_range(part)
        out = []
        for i, stats in enumerate(self._stats):
            pos = stats.positions.get(c)
            if pos is None:
                continue
            pos = pos[(pos[:, 0] >= lo) & (pos[:, 0] < hi)]
            if pos.size:
                share = stats.counts[c] * len(pos) / len(stats.positions[c])
                out.append((i, pos, share))
        return out

    def _table(self, part: str) -> dict:
        """Per part: the cells that can give a patch centre, the class probabilities
        ``p_class``, and ``within[cell, class]``: the share of the class's centres in
        each cell. A patch is (class, cell, position) with probability
        ``p_class[c] * within[cell, c] / len(positions)``."""
        if part in self._candidate_cache:
            return self._candidate_cache[part]
        lo, hi = self.centre_range(part)
        if hi <= lo:
            raise ValueError(f"the {part} slab is empty")
        if self.target is None:
            cells = []
            for box in self._grid:
                z0, z1 = max(box[0][0], lo), min(box[0][1], hi)
                if z1 > z0:
                    cells.append(((z0, z1), box[1], box[2]))
            sizes = np.array([np.prod([b - a for a, b in c]) for c in cells], float)
            table = {"cells": cells, "p_cell": sizes / sizes.sum()}
        else:
            per_class = {c: self._candidates(part, c) for c in range(self.n_classes)}
            present = [c for c, cand in per_class.items() if cand]
            if not present:
                raise ValueError(f"no labelled voxel lies in the {part} slab")
            index = sorted({i for c in present for i, _, _ in per_class[c]})
            row = {i: r for r, i in enumerate(index)}
            within = np.zeros((len(index), len(present)))
            positions: dict = {}
            for k, c in enumerate(present):
                for i, pos, share in per_class[c]:
                    within[row[i], k] = share
                    positions[row[i], k] = pos
            weights = within.sum(axis=0)
            within /= weights
            p_class = (
                np.full(len(present), 1 / len(present)) if self.balance else weights / weights.sum()
            )
            joint = within * p_class  # P(cell, class)
            table = {
                "present": present,
                "positions": positions,
                "joint": joint,
                "p_cell": joint.sum(axis=1),
            }
        self._candidate_cache[part] = table
        return table

    def _draw_regions(self, part: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Start corners (z, y, x) of ``n`` patches in groups that share a cell (each
        group is read as one region); z is the centre slice for 2D/2.5D.

        Cells are drawn from the marginal distribution of single patches, then the
        patches of a cell from the conditional one: every patch has exactly the
        distribution of an independent draw (class balance included)."""
        table = self._table(part)
        lo, hi = self.centre_range(part)
        pz, py, px = self.patch
        _, ny, nx = self.shape
        groups = max(1, -(-n // self.patches_per_read))
        sizes = [n // groups + (1 if g < n % groups else 0) for g in range(groups)]
        chosen = rng.choice(len(table["p_cell"]), groups, p=table["p_cell"])
        out = []
        for cell, size in zip(chosen, sizes, strict=True):
            if self.target is None:
                box = table["cells"][cell]
                voxels = np.stack([rng.integers(a, b, size) for a, b in box], axis=1)
            else:
                p = table["joint"][cell] / table["joint"][cell].sum()
                classes = rng.choice(len(p), size, p=p)
                voxels = np.empty((size, 3), np.int64)
                for k, c in enumerate(classes):
                    pos = table["positions"][cell, c]
                    voxels[k] = pos[rng.integers(len(pos))]
            origins = np.empty((size, 3), np.int64)
            for k, (z, y, x) in enumerate(voxels):
                # a random offset keeps the voxel inside the patch (and the patch inside
                # the volume): the voxel is at a uniformly drawn place within the window
                y0 = int(np.clip(y - rng.integers(0, py), 0, ny - py))
                x0 = int(np.clip(x - rng.integers(0, px), 0, nx - px))
                z0 = int(np.clip(z - rng.integers(0, pz), lo, hi - 1)) if pz > 1 else int(z)
                origins[k] = (z0, y0, x0)
            out.append(origins)
        return out

    def _draw_origins(self, part: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Start corners of ``n`` patches (the groups of :meth:`_draw_regions`, joined)."""
        return np.concatenate(self._draw_regions(part, n, rng))

    def _windows(self, origin) -> tuple[slice, slice, slice]:
        z0, y0, x0 = (int(v) for v in origin)
        pz, py, px = self.patch
        if pz > 1:
            zs = slice(z0, z0 + pz)
        else:
            half = (self.context - 1) // 2
            zs = slice(z0 - half, z0 + half + 1)
        return zs, slice(y0, y0 + py), slice(x0, x0 + px)

    def _target_window(self, origin) -> tuple[slice, slice, slice]:
        zs, ys, xs = self._windows(origin)
        if self.patch[0] == 1:
            zs = slice(int(origin[0]), int(origin[0]) + 1)
        return zs, ys, xs

    def _region_task(self, origins: np.ndarray) -> tuple[Any, dict]:
        """The region that holds every window of ``origins`` and the windows inside it."""
        windows = [self._windows(o) for o in origins]
        nz = self.shape[0]
        region = tuple(
            (min(w[a].start for w in windows), max(w[a].stop for w in windows)) for a in range(3)
        )
        region = ((max(region[0][0], 0), min(region[0][1], nz)), region[1], region[2])

        def local(box):
            zs, rest = box[0], box[1:]
            lo = region[0][0]
            if zs.start < 0 or zs.stop > nz:  # context beyond the volume's ends: repeat
                z = np.clip(np.arange(zs.start, zs.stop), 0, nz - 1) - lo
            else:
                z = slice(zs.start - lo, zs.stop - lo)
            corner = (o for o, _ in region[1:])
            return (z, *(slice(b.start - o, b.stop - o) for b, o in zip(rest, corner, strict=True)))

        cuts = {"image": [local(w) for w in windows]}
        for role in ("target", "clean"):
            if role in self._sources:
                cuts[role] = [local(self._target_window(o)) for o in origins]
        return region, cuts

    def _to_tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {}
        image = np.asarray(arrays["image"], np.float32)
        if self.normalize is not None:
            mean, std = self.normalize
            image = (image - mean) / std
        # non-finite voxels (NaN outside a field of view) enter the network as 0, as
        # in predict; their labels are 255 (pseudo labels) or the user's. Left in, one
        # NaN makes the loss and then every weight NaN
        image = np.nan_to_num(image, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        three_d = self.patch[0] > 1
        # (N, context, y, x) for slices; (N, 1, z, y, x) for 3D
        out["image"] = torch.from_numpy(image[:, None] if three_d else image)
        if "target" in arrays:
            t = np.asarray(arrays["target"]).astype(np.int64)
            out["target"] = torch.from_numpy(t if three_d else t[:, 0])
        if "clean" in arrays:
            c = np.asarray(arrays["clean"], np.float32)
            if self.normalize is not None:
                c = (c - self.normalize[0]) / self.normalize[1]
            # non-finite clean voxels stay as they are: the denoising losses and PSNR
            # skip them
            out["clean"] = torch.from_numpy(c[:, None] if three_d else c)
        if "origin" in arrays:
            out["origin"] = torch.from_numpy(np.asarray(arrays["origin"], np.int64))
        return out

    def batches(
        self,
        part: str = "train",
        batch_size: int = 8,
        n_batches: int | None = None,
        *,
        prefetch: int = 4,
        seed: int | None = None,
        start: int = 0,
        round_batches: int | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches ``{"image", "target"?, "clean"?, "origin"}`` of ``part`` (endless
        by default).

        ``image`` is ``(N, context, py, px)`` for slices and ``(N, 1, pz, py, px)`` for 3D;
        ``target`` is the centre slice's labels ``(N, py, px)`` (or ``(N, pz, py, px)``);
        ``clean`` has the target's layout with a channel axis; ``origin`` ``(N, 3)`` is
        each patch's window start (z is the centre slice for slice patches).

        Batches come in rounds of ``round_batches`` (default: ``shuffle`` patches'
        worth). A round's patches are drawn in groups of ``patches_per_read`` that share
        a cell; each group is **one task** that reads the region under its windows once
        (straight from the store for volumes that :func:`xctdask.open_volume` opened;
        pseudo labels computed from that region) and returns the patches together. The
        round is shuffled before it is cut into batches. With an active
        ``distributed.Client`` and Dask inputs the tasks run on the workers; otherwise in
        a local thread pool. At least ``prefetch`` batches are in flight ahead of the
        consumer: this **computes** (reads the patches) as the iterator advances.

        Batch ``k`` depends only on ``(seed, part, k)`` (and the batch and round sizes):
        ``start=k`` resumes a stream exactly where an interrupted one stopped. Closing
        the iterator (or the sampler, see :meth:`close`) cancels what is in flight.
        """
        self._check_part(part)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._table(part)  # errors about the part before any task is sent
        root = self.seed if seed is None else seed
        per_round = round_batches or max(1, self.shuffle // batch_size)
        stop = None if n_batches is None else start + n_batches
        stream = self._stream(part, batch_size, root, per_round, start, stop, prefetch)
        self._streams.add(stream)
        return stream

    def _stream(
        self,
        part: str,
        batch_size: int,
        root: int,
        per_round: int,
        start: int,
        stop: int | None,
        prefetch: int,
    ) -> Iterator[dict[str, torch.Tensor]]:
        client = None if self.in_memory else active_client()
        pool = None
        if client is None:
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="xctdask-patches")
        ahead = max(1, -(-max(1, prefetch) // per_round))  # rounds in flight beyond this one
        rounds: deque = deque()  # (round number, region origins, futures)
        next_round = start // per_round
        last_round = None if stop is None else (stop - 1) // per_round

        def submit_round() -> None:
            nonlocal next_round
            if last_round is not None and next_round > last_round:
                return
            r = next_round
            next_round += 1
            rng = np.random.default_rng(np.random.SeedSequence([root, PARTS.index(part), r]))
            groups = self._draw_regions(part, per_round * batch_size, rng)
            order = rng.permutation(per_round * batch_size)
            futures = []
            for origins in groups:
                region, cuts = self._region_task(origins)
                sources = bind(self._sources, region, client)
                if client is not None:
                    futures.append(client.submit(cut_patches, sources, region, cuts, pure=False))
                else:
                    futures.append(pool.submit(cut_patches, sources, region, cuts))
            rounds.append((r, np.concatenate(groups), order, futures))

        if last_round is not None and last_round < next_round:
            return
        try:
            for _ in range(1 + ahead):
                submit_round()
            k = start
            while rounds and (stop is None or k < stop):
                r, origins, order, futures = rounds.popleft()
                parts = [f.result() for f in futures]
                submit_round()
                arrays = {role: np.concatenate([p[role] for p in parts]) for role in parts[0]}
                arrays["origin"] = origins
                arrays = {role: value[order] for role, value in arrays.items()}
                while k < (r + 1) * per_round and (stop is None or k < stop):
                    first = (k - r * per_round) * batch_size
                    chunk = {role: v[first : first + batch_size] for role, v in arrays.items()}
                    yield self._to_tensors(chunk)
                    k += 1
        finally:
            for _, _, _, futures in rounds:
                for future in futures:
                    _cancel(future)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def validation_batches(
        self, batch_size: int = 8, n_batches: int = 4, seed: int | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """The fixed validation batches, read once and cached (**computes** the first
        time)."""
        key = (batch_size, n_batches, self.seed if seed is None else seed)
        if key not in self._validation_cache:
            self._validation_cache[key] = list(
                self.batches(
                    "validation", batch_size, n_batches, seed=key[2], round_batches=n_batches
                )
            )
        return self._validation_cache[key]

    def class_statistics(
        self, part: str = "train", n_patches: int = 64, batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(P, S)`` on ``n_patches`` patches of ``part`` as training draws them:
        P the labelled voxels of each class, S the number of patches that contain it
        (what :func:`xctdask.losses.class_weights` needs). **Reads** the patches.

        Examples
        --------
        >>> import numpy as np
        >>> labels = np.zeros((20, 16, 16), np.uint8); labels[:, :4] = 1
        >>> s = PatchSampler(labels, labels, patch=(1, 8, 8), margin=1, split=(1, 0, 0))
        >>> pixels, samples = s.class_statistics(n_patches=32)
        >>> bool(samples[0] == 32), bool(pixels[1] < pixels[0])
        (True, True)
        """
        if self.target is None:
            raise ValueError("class statistics need a target (labels)")
        pixels = np.zeros(self.n_classes, np.int64)
        samples = np.zeros(self.n_classes, np.int64)
        n_batches = -(-n_patches // batch_size)
        seen = 0
        for batch in self.batches(part, batch_size, n_batches, seed=self.seed + 7919):
            for t in batch["target"][: n_patches - seen].numpy():
                counts = np.bincount(t[t != UNLABELLED].ravel(), minlength=self.n_classes)
                pixels += counts[: self.n_classes]
                samples += counts[: self.n_classes] > 0
                seen += 1
        return pixels, samples

    def describe(self) -> str:
        """What validation against this sampler measures, e.g. "pseudo labels"."""
        return self.target_name if self.target is not None else "the clean scan"

    def dataset(
        self, part: str = "train", batch_size: int = 8, **options
    ) -> torch.utils.data.IterableDataset:
        """A PyTorch ``IterableDataset`` of batches (use ``DataLoader(ds, batch_size=None)``)."""
        sampler = self

        class _Batches(torch.utils.data.IterableDataset):
            def __iter__(self):
                return sampler.batches(part, batch_size, **options)

        return _Batches()

    def __repr__(self) -> str:
        return (
            f"PatchSampler(shape={self.shape}, patch={self.patch}, context={self.context}, "
            f"slabs={self.slabs}, n_classes={self.n_classes}, cell={self.cell}, "
            f"read={describe(self._sources)})"
        )


def _cancel(future: Any) -> None:
    """Cancel a local or distributed future; a client already closed has nothing left
    to cancel (and must not raise from a generator being closed)."""
    try:
        future.cancel()
    except RuntimeError:  # "IOLoop is closed": the client went first
        pass
