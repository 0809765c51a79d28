"""The global tile lattice and blend weights of sliding-window inference.

Both follow MONAI's ``sliding_window_inference`` so results can be checked against it
exactly:

* along an axis of length ``n`` with tile ``w`` (``w`` is first shrunk to ``n`` when the
  volume is smaller), the step is ``int(w * (1 - overlap))`` (at least 1; ``w`` when the
  tile spans the axis), tiles start at ``0, step, 2·step, …`` and the last one is moved
  back to end flush with the far edge of the volume;
* gaussian weights are ``exp(-x² / (2σ²))`` with ``σ = 0.125·w`` and ``x`` measured from
  the tile centre, multiplied across axes, then clamped below at
  ``max(min(weights), 1e-3)``; ``"constant"`` weights are 1; ``"linear"`` weights (not
  in MONAI) fall off as a tent from the centre to one voxel beyond the tile edge.

The lattice is global: it depends on the volume's shape, never on its chunking, which
is what makes the stitched result independent of the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["BLENDS", "Lattice", "axis_starts", "blend_weights"]

BLENDS = ("gaussian", "linear", "constant")


def axis_starts(length: int, tile: int, overlap: float) -> np.ndarray:
    """Tile starts along one axis, as MONAI's ``dense_patch_slices`` places them.

    Examples
    --------
    >>> axis_starts(100, 64, 0.5).tolist()
    [0, 32, 36]
    >>> axis_starts(10, 64, 0.5).tolist()  # the tile shrinks to the axis
    [0]
    """
    tile = min(tile, length)
    if tile == length:
        return np.zeros(1, dtype=np.int64)
    step = max(int(tile * (1 - overlap)), 1)
    count = next(d for d in range(math.ceil(length / step) + 1) if d * step + tile >= length) + 1
    starts = np.arange(count, dtype=np.int64) * step
    return np.minimum(starts, length - tile)


def blend_weights(tile: tuple[int, ...], blend: str, sigma_scale: float = 0.125) -> np.ndarray:
    """Blend weights of one tile (float32), MONAI's importance map for "gaussian".

    Examples
    --------
    >>> w = blend_weights((5, 5), "gaussian")
    >>> w.shape, float(w[2, 2]), bool(w[0, 0] < w[1, 1] < w[2, 2])
    ((5, 5), 1.0, True)
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    import torch  # the weights are MONAI's, computed the way MONAI computes them

    if blend == "constant":
        return np.ones(tile, dtype=np.float32)
    weights = None
    for i, size in enumerate(tile):
        x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float)
        if blend == "gaussian":
            line = torch.exp(x**2 / (-2 * (size * sigma_scale) ** 2))
        else:
            line = 1 - x.abs() / ((size + 1) / 2.0)
        weights = line if weights is None else weights.unsqueeze(-1) * line[(None,) * i]
    assert weights is not None
    floor = max(float(weights.min()), 1e-3)
    return torch.clamp(weights, min=floor).numpy()


@dataclass(frozen=True)
class Lattice:
    """Tiles over a volume: ``tile`` and ``starts`` per axis, and the blend weights.

    An axis that is not tiled (the slicing axis of a 2-D network) has tile 1 and a
    start at every index; its weight is 1.

    Examples
    --------
    >>> lat = Lattice.build((4, 100, 100), (1, 64, 64), 0.5, "gaussian")
    >>> lat.n_tiles, lat.tile
    (36, (1, 64, 64))
    """

    shape: tuple[int, ...]
    tile: tuple[int, ...]
    starts: tuple[np.ndarray, ...]
    blend: str

    @classmethod
    def build(
        cls, shape: tuple[int, ...], tile: tuple[int, ...], overlap: float, blend: str
    ) -> Lattice:
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        tile = tuple(min(int(t), int(n)) for t, n in zip(tile, shape, strict=True))
        starts = tuple(
            np.arange(n, dtype=np.int64) if t == 1 else axis_starts(n, t, overlap)
            for n, t in zip(shape, tile, strict=True)
        )
        return cls(tuple(int(n) for n in shape), tile, starts, blend)

    @property
    def n_tiles(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    @cached_property
    def weights(self) -> np.ndarray:
        """The blend weights of one tile (over the tiled axes; 1 along untiled ones)."""
        tiled = tuple(t for t in self.tile if t > 1)
        if not tiled:
            return np.ones(self.tile, dtype=np.float32)
        return blend_weights(tiled, self.blend).reshape(self.tile)

    def owned(self, axis: int, lo: int, hi: int) -> np.ndarray:
        """Starts along ``axis`` that fall in ``[lo, hi)``: the tiles a chunk owns."""
        s = self.starts[axis]
        return s[(s >= lo) & (s < hi)]

    def covering(self, axis: int, lo: int, hi: int) -> np.ndarray:
        """Starts along ``axis`` of tiles that overlap ``[lo, hi)``."""
        s = self.starts[axis]
        return s[(s < hi) & (s + self.tile[axis] > lo)]

    def weight_sum(self, region: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Sum of the weights of every tile covering each voxel of ``region``.

        Only the lattice is needed, so any task can compute it for its own region
        without the neighbours' network outputs. Along untiled axes the sum is 1, and
        the result has length 1 there (it broadcasts).
        """
        out_shape = tuple(
            (hi - lo) if t > 1 else 1 for (lo, hi), t in zip(region, self.tile, strict=True)
        )
        total = np.zeros(out_shape, dtype=np.float64)
        tiled_axes = [a for a, t in enumerate(self.tile) if t > 1]
        if not tiled_axes:
            return np.ones(out_shape, dtype=np.float32)
        per_axis = [self.covering(a, *region[a]) for a in tiled_axes]
        weights = self.weights.reshape([self.tile[a] for a in tiled_axes])
        for corner in np.stack(np.meshgrid(*per_axis, indexing="ij"), -1).reshape(
            -1, len(tiled_axes)
        ):
            dst, src = [], []
            for a, start in zip(tiled_axes, corner, strict=True):
                lo, hi = region[a]
                a0, a1 = max(lo, start), min(hi, start + self.tile[a])
                dst.append(slice(a0 - lo, a1 - lo))
                src.append(slice(a0 - start, a1 - start))
            full_dst = [slice(None)] * len(self.shape)
            for a, s in zip(tiled_axes, dst, strict=True):
                full_dst[a] = s
            total[tuple(full_dst)] += weights[tuple(src)].reshape(
                [total[tuple(full_dst)].shape[a] for a in range(len(self.shape))]
            )
        return total.astype(np.float32)
