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
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch

from xctdask._progress import compute
from xctdask.backend import UNLABELLED, as_dask, check_same_shape, unwrap, validate_volume
from xctdask.cluster import active_client

__all__ = ["PARTS", "PatchSampler"]

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class _ChunkStats:
    """Class counts and a reservoir of global positions per class, for one chunk."""

    counts: np.ndarray  # (n_classes,)
    positions: dict  # class -> (k, 3) int64 global (z, y, x)


def _chunk_stats(
    target: np.ndarray, reservoir: int, seed: int, origin: tuple[int, ...]
) -> _ChunkStats:
    t = np.asarray(target)
    flat = t.ravel()
    labelled = flat[flat != UNLABELLED]
    if labelled.size and (labelled.min() < 0 or labelled.max() > UNLABELLED):
        bad = labelled[(labelled < 0) | (labelled > UNLABELLED)][0]
        raise ValueError(f"target holds label {bad}, outside 0..254 (255 = unlabelled)")
    # as long as the largest label here; the range check against n_classes is global
    counts = np.bincount(labelled.astype(np.int64))
    rng = np.random.default_rng(seed)
    positions = {}
    for c in np.flatnonzero(counts):
        idx = np.flatnonzero(flat == c)
        if idx.size > reservoir:
            idx = rng.choice(idx, reservoir, replace=False)
        positions[int(c)] = np.stack(np.unravel_index(idx, t.shape), axis=1) + np.array(origin)
    return _ChunkStats(counts, positions)


def _stats_cell(target, reservoir, seed, block_info=None):
    info = block_info[0]
    origin = tuple(start for start, _ in info["array-location"])
    block_seed = int(np.random.SeedSequence([seed, *info["chunk-location"]]).generate_state(1)[0])
    cell = np.empty((1,) * target.ndim, dtype=object)
    cell[(0,) * target.ndim] = _chunk_stats(target, reservoir, block_seed, origin)
    return cell


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
        progress: bool = False,
        target_name: str = "labels",
    ):
        validate_volume(image, name="image")
        for other, name in ((target, "target"), (clean, "clean")):
            if other is not None:
                validate_volume(other, name=name)
                check_same_shape(other, image, (name, "image"))
        patch = tuple(int(p) for p in patch)
        if len(patch) != 3 or min(patch) < 1:
            raise ValueError(f"patch must be three positive sizes (z, y, x), got {patch!r}")
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
        self.shape = shape
        self.patch, self.context, self.balance = patch, context, balance
        self.normalize = normalize
        self.seed = seed
        self.target_name = target_name
        self._validation_cache: dict[tuple, list] = {}
        # in-memory inputs are cut here: a cluster would receive their chunks every batch
        self.in_memory = not any(
            isinstance(unwrap(x), da.Array) for x in (image, target, clean) if x is not None
        )
        self.image = as_dask(image)
        self.target = None if target is None else as_dask(target).rechunk(self.image.chunks)
        self.clean = None if clean is None else as_dask(clean).rechunk(self.image.chunks)
        depth = patch[0] if patch[0] > 1 else context
        self.margin = depth if margin is None else int(margin)
        self.slabs = self._slabs(split, depth)
        self.n_classes = n_classes
        self._stats: list[_ChunkStats] = []
        self._candidate_cache: dict[str, dict] = {}
        if self.target is not None:
            if np.dtype(self.target.dtype).kind not in "iu":
                raise TypeError(f"target must hold integer labels, got {self.target.dtype}")
            self._collect(reservoir, progress)

    # ----------------------------------------------------------------- splits
    def _slabs(self, split, depth: int) -> dict[str, tuple[int, int]]:
        nz = self.shape[0]
        usable = nz - 2 * self.margin
        if usable < depth * sum(1 for f in split if f > 0):
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
            start += size + self.margin
        for part, (a, b) in slabs.items():
            if 0 < b - a < depth:
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
        return a + half, b - half

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
        """The one pass over the target: counts and reservoirs; ``n_classes`` from it."""
        cells = da.map_blocks(
            _stats_cell,
            self.target,
            reservoir,
            self.seed,
            chunks=tuple((1,) * len(c) for c in self.target.chunks),
            dtype=object,
            meta=np.empty((0, 0, 0), dtype=object),
        )
        (table,) = compute(cells, progress=progress, description="class counts per chunk")
        stats = list(np.asarray(table).ravel())
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
            _ChunkStats(np.pad(s.counts, (0, n_classes - s.counts.size)), s.positions)
            for s in stats
        ]
        self.class_counts = np.sum([s.counts for s in self._stats], axis=0)
        if not self.class_counts.any():
            raise ValueError("the target has no labelled voxel (everything is 255)")

    # --------------------------------------------------------------- drawing
    def _candidates(self, part: str, c: int):
        """(chunk index, positions) pairs with class ``c`` centres inside the part."""
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

    def _draw_origins(self, part: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """Start corners (z, y, x) of ``n`` patches; z is the centre slice for 2D/2.5D."""
        lo, hi = self.centre_range(part)
        if hi <= lo:
            raise ValueError(f"the {part} slab is empty")
        pz, py, px = self.patch
        _, ny, nx = self.shape
        if self.target is None:
            z = rng.integers(lo, hi, n)
            return np.stack(
                [z, rng.integers(0, ny - py + 1, n), rng.integers(0, nx - px + 1, n)], 1
            )
        if part not in self._candidate_cache:
            self._candidate_cache[part] = {
                c: self._candidates(part, c) for c in range(self.n_classes)
            }
        per_class = self._candidate_cache[part]
        present = [c for c, cand in per_class.items() if cand]
        if not present:
            raise ValueError(f"no labelled voxel lies in the {part} slab")
        weights = np.array([sum(s for _, _, s in per_class[c]) for c in present], float)
        p_class = (
            np.full(len(present), 1 / len(present)) if self.balance else weights / weights.sum()
        )
        origins = np.empty((n, 3), np.int64)
        for k in range(n):
            c = present[rng.choice(len(present), p=p_class)]
            cand = per_class[c]
            share = np.array([s for _, _, s in cand])
            _, pos, _ = cand[rng.choice(len(cand), p=share / share.sum())]
            z, y, x = pos[rng.integers(len(pos))]
            # a random offset that keeps the voxel inside the patch (and the patch inside
            # the volume): the voxel is at a uniformly drawn place within the window
            y0 = int(np.clip(y - rng.integers(0, py), 0, ny - py))
            x0 = int(np.clip(x - rng.integers(0, px), 0, nx - px))
            if pz > 1:
                z0 = int(np.clip(z - rng.integers(0, pz), lo, hi - 1))
            else:
                z0 = int(z)
            origins[k] = (z0, y0, x0)
        return origins

    def _windows(self, origin) -> tuple[slice, slice, slice]:
        z0, y0, x0 = (int(v) for v in origin)
        pz, py, px = self.patch
        if pz > 1:
            zs = slice(z0, z0 + pz)
        else:
            half = (self.context - 1) // 2
            zs = slice(z0 - half, z0 + half + 1)
        return zs, slice(y0, y0 + py), slice(x0, x0 + px)

    def _lazy_batch(self, origins: np.ndarray) -> dict[str, da.Array]:
        images, targets, cleans = [], [], []
        for origin in origins:
            zs, ys, xs = self._windows(origin)
            images.append(self.image[zs, ys, xs])
            if self.patch[0] == 1:
                centre = slice(int(origin[0]), int(origin[0]) + 1)
            else:
                centre = zs
            if self.target is not None:
                targets.append(self.target[centre, ys, xs])
            if self.clean is not None:
                cleans.append(self.clean[centre, ys, xs])
        batch = {"image": da.stack(images)}
        if targets:
            batch["target"] = da.stack(targets)
        if cleans:
            batch["clean"] = da.stack(cleans)
        return batch

    def _to_tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {}
        image = np.asarray(arrays["image"], np.float32)
        if self.normalize is not None:
            mean, std = self.normalize
            image = (image - mean) / std
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
            out["clean"] = torch.from_numpy(c[:, None] if three_d else c)
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
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches ``{"image", "target"?, "clean"?}`` of ``part`` (endless by default).

        ``image`` is ``(N, context, py, px)`` for slices and ``(N, 1, pz, py, px)`` for 3D;
        ``target`` is the centre slice's labels ``(N, py, px)`` (or ``(N, pz, py, px)``);
        ``clean`` has the target's layout with a channel axis. With an active
        ``distributed.Client`` and Dask-backed inputs the patches are cut on the
        workers; otherwise (or for in-memory NumPy inputs) in a local thread pool.
        ``prefetch`` batches are in flight ahead of the consumer: this **computes**
        (reads the patches) as the iterator advances.

        Batch ``k`` depends only on ``(seed, part, k)``: ``start=k`` resumes a stream
        exactly where an interrupted one stopped.
        """
        self._check_part(part)
        root = self.seed if seed is None else seed
        stop = None if n_batches is None else start + n_batches
        counter = itertools.count(start) if stop is None else iter(range(start, stop))
        client = None if self.in_memory else active_client()
        pool = None if client is not None else ThreadPoolExecutor(max(1, prefetch))
        pending: deque = deque()

        def submit() -> bool:
            k = next(counter, None)
            if k is None:
                return False
            rng = np.random.default_rng(np.random.SeedSequence([root, PARTS.index(part), k]))
            lazy = self._lazy_batch(self._draw_origins(part, batch_size, rng))
            if client is not None:
                pending.append(client.compute(lazy))
            else:
                pending.append(pool.submit(lambda b=lazy: dask.compute(b, scheduler="threads")[0]))
            return True

        try:
            for _ in range(max(1, prefetch)):
                if not submit():
                    break
            while pending:
                future = pending.popleft()
                arrays = future.result()
                submit()
                yield self._to_tensors(arrays)
        finally:
            for future in pending:
                future.cancel()
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
                self.batches("validation", batch_size, n_batches, seed=key[2])
            )
        return self._validation_cache[key]

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
            f"slabs={self.slabs}, n_classes={self.n_classes})"
        )
