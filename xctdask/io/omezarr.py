"""OME-Zarr (NGFF) multiscale metadata and pyramid downsampling.

We write NGFF 0.5 (Zarr v3, metadata under ``attributes["ome"]``) and, for Zarr v2
stores, NGFF 0.4 (``.zattrs["multiscales"]``); both are read. Levels are named
``"0"``, ``"1"``, … and each halves the previous one along every axis.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

__all__ = ["downsample", "multiscales_metadata", "read_multiscales"]


def multiscales_metadata(
    n_levels: int,
    voxel_size: tuple[float, float, float],
    unit: str | None,
    name: str,
    kind: str,
) -> dict[str, Any]:
    """The ``multiscales`` entry for ``n_levels`` levels each downsampled by 2."""
    axes = [{"name": ax, "type": "space"} for ax in ("z", "y", "x")]
    if unit and unit not in ("voxel", "pixel"):
        for ax in axes:
            ax["unit"] = unit
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v) * 2**level for v in voxel_size]}
            ],
        }
        for level in range(n_levels)
    ]
    return {
        "axes": axes,
        "datasets": datasets,
        "name": name,
        "type": "mode" if kind == "labels" else "mean",
    }


def read_multiscales(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The first ``multiscales`` entry of an NGFF 0.4 or 0.5 group, or None."""
    if "ome" in attrs and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"][0]
    if "multiscales" in attrs:
        return attrs["multiscales"][0]
    return None


def _mean_block(block: np.ndarray) -> np.ndarray:
    z, y, x = (s // 2 for s in block.shape)
    b = block[: 2 * z, : 2 * y, : 2 * x].reshape(z, 2, y, 2, x, 2)
    out = b.astype(np.float64).mean(axis=(1, 3, 5))
    if np.issubdtype(block.dtype, np.integer):
        out = np.rint(out)
    return out.astype(block.dtype)


def _mode_block(block: np.ndarray) -> np.ndarray:
    z, y, x = (s // 2 for s in block.shape)
    cells = block[: 2 * z, : 2 * y, : 2 * x].reshape(z, 2, y, 2, x, 2)
    cells = cells.transpose(0, 2, 4, 1, 3, 5).reshape(z, y, x, 8)
    best = cells[..., 0].copy()
    best_count = np.zeros((z, y, x), np.int8)
    for value in np.unique(cells):  # ties go to the smallest label
        count = (cells == value).sum(axis=-1, dtype=np.int8)
        better = count > best_count
        best[better] = value
        best_count[better] = count[better]
    return best


def downsample(volume: da.Array, kind: str) -> da.Array:
    """Halve a 3-D Dask array along every axis: mean for images, mode for labels.

    An odd trailing voxel along an axis is dropped. Each output chunk comes from one
    input chunk, so this is one task per chunk.
    """
    even = tuple(s - s % 2 for s in volume.shape)
    if min(even) == 0:
        raise ValueError(f"cannot downsample shape {volume.shape}: an axis is shorter than 2")
    volume = volume[tuple(slice(0, s) for s in even)]
    chunks = tuple(max(2, c - c % 2) for c in (max(cs) for cs in volume.chunks))
    volume = volume.rechunk(chunks)
    block_fn = _mode_block if kind == "labels" else _mean_block
    out_chunks = tuple(tuple(c // 2 for c in cs) for cs in volume.chunks)
    return volume.map_blocks(
        block_fn, chunks=out_chunks, dtype=volume.dtype, meta=np.empty((0, 0, 0), volume.dtype)
    )
