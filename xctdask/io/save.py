"""``save_volume``: write a volume to Zarr chunk by chunk, resumably.

How resume works: every output chunk is written by exactly one task, with
``write_empty_chunks`` on so that every finished chunk exists in the store, and Zarr's
local store writes each chunk atomically (temporary file, then link). A store we create
carries ``attrs["xctdask"]["complete"] = False`` until the last chunk is in. A rerun on
such an incomplete store lists the chunk keys already present and builds tasks only for
the others, so the source is not even computed for finished chunks.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from xctdask import _progress
from xctdask.backend import as_dask, is_cupy, unwrap, validate_volume
from xctdask.io.omezarr import downsample, multiscales_metadata

__all__ = ["SaveResult", "save_volume"]

_MARK = "xctdask"


@dataclass(frozen=True)
class SaveResult:
    """What ``save_volume`` did.

    Attributes
    ----------
    path : Path
        The store written.
    chunks_written, chunks_skipped : int
        Chunks written now, and chunks found complete from an earlier interrupted run
        (summed over all pyramid levels).
    levels : int
        Number of resolution levels in the store (1 without a pyramid).
    """

    path: Path
    chunks_written: int
    chunks_skipped: int
    levels: int


def _codec(compression: str | None, level: int, zarr_format: int) -> Any:
    if compression is None:
        return None
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname=compression, clevel=level, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname=compression, clevel=level)


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _existing_chunks(array: Any) -> set[tuple[int, ...]]:
    """Chunk grid coordinates whose keys are present in ``array``'s store."""
    from zarr.core.sync import sync

    store_path = array.store_path
    prefix = f"{store_path.path}/" if store_path.path else ""

    async def listing() -> list[str]:
        return [key async for key in store_path.store.list_prefix(prefix)]

    present = {key[len(prefix) :] for key in sync(listing())}
    grid = itertools.product(*(range(n) for n in array.cdata_shape))
    return {c for c in grid if array.metadata.encode_chunk_key(c) in present}


def _write_chunk(block: Any, array: Any, region: tuple[slice, ...]) -> int:
    array[region] = np.asarray(block)
    return 1


def _write_array(data: da.Array, array: Any, progress: bool, description: str) -> tuple[int, int]:
    """Write the chunks of ``array`` that are not yet in its store; return counts."""
    done = _existing_chunks(array)
    blocks = data.to_delayed(optimize_graph=True)
    starts = [np.cumsum((0, *c)) for c in data.chunks]
    tasks = []
    for index in itertools.product(*(range(n) for n in data.numblocks)):
        if index in done:
            continue
        region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index, strict=True))
        tasks.append(dask.delayed(_write_chunk, pure=False)(blocks[index], array, region))
    if tasks:
        _progress.compute(*tasks, progress=progress, description=description)
    return len(tasks), len(done)


def _mark(attrs: dict[str, Any], complete: bool) -> dict[str, Any]:
    from xctdask import __version__

    return {**attrs, _MARK: {"complete": complete, "version": __version__}}


def is_interrupted_write(path: str | Path) -> bool:
    """True if ``path`` is a Zarr store that :func:`save_volume` began and did not
    finish: calling ``save_volume`` again with the same volume resumes it.

    Examples
    --------
    >>> import tempfile, os
    >>> is_interrupted_write(os.path.join(tempfile.mkdtemp(), "none.zarr"))
    False
    """
    import zarr

    path = Path(path)
    if not path.exists() or not _is_zarr_store(path):
        return False
    try:
        mark = dict(zarr.open(store=str(path), mode="r").attrs).get(_MARK, {})
    except Exception:  # an unreadable store is not ours to resume
        return False
    return mark.get("complete") is False


def _prepare_target(path: Path, overwrite: bool) -> bool:
    """Decide between a fresh write and a resume; return True to resume."""

    if not path.exists():
        return False
    if overwrite:
        if not _is_zarr_store(path):
            raise FileExistsError(
                f"{path} exists and is not a Zarr store; refusing to delete it even with "
                "overwrite=True"
            )
        shutil.rmtree(path)
        return False
    if is_interrupted_write(path):
        return True
    raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")


def _check_resumable(array: Any, data: da.Array, chunks: tuple[int, ...], path: Path) -> None:
    found = (tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks))
    want = (tuple(data.shape), np.dtype(data.dtype), chunks)
    if found != want:
        raise FileExistsError(
            f"{path} holds an interrupted write of shape/dtype/chunks {found}, which does "
            f"not match this volume {want}; pass overwrite=True to start again"
        )


def _open_or_create(
    parent: Any,
    name: str | None,
    path: Path,
    data: da.Array,
    chunks,
    codec,
    zarr_format: int,
    attrs: dict[str, Any],
    resume: bool,
) -> Any:
    import zarr

    if resume:
        array = zarr.open_array(
            store=str(path), path=name or "", mode="r+", config={"write_empty_chunks": True}
        )
        _check_resumable(array, data, chunks, path)
        return array
    kwargs: dict[str, Any] = dict(
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        fill_value=0,
        compressors=codec,
        attributes=attrs,
        config={"write_empty_chunks": True},
    )
    if zarr_format == 3:
        kwargs["dimension_names"] = ("z", "y", "x")
    if parent is None:
        return zarr.create_array(store=str(path), zarr_format=zarr_format, **kwargs)
    return parent.create_array(name, **kwargs)


def save_volume(
    data: Any,
    path: str | Path,
    *,
    chunks: tuple[int, int, int] | None = None,
    overwrite: bool = False,
    multiscale: int | bool = False,
    kind: str | None = None,
    compression: str | None = "zstd",
    compression_level: int = 3,
    zarr_format: int = 3,
    progress: bool = True,
) -> SaveResult:
    """Write a volume to a Zarr store, chunk by chunk through Dask; resumable.

    This computes: it is the point where a lazy pipeline runs. Exactly one task writes
    each output chunk. If an earlier call on the same ``path`` was interrupted (a
    crash, a failing chunk, a killed job), calling again with the same volume writes
    only the chunks that are missing and leaves the finished ones alone.

    Parameters
    ----------
    data : array or DataArray
        A 3-D volume: NumPy, CuPy, Dask or an ``xarray.DataArray`` (its ``voxel_size``
        and ``unit`` attributes are stored).
    path : str or Path
        Output store (a folder). It must not exist unless ``overwrite=True`` or it holds
        an interrupted write of this same volume.
    chunks : tuple of int, optional
        Storage chunks; default: the Dask chunks of ``data`` (regularised).
    overwrite : bool
        Replace an existing Zarr store at ``path``. A path that is not a Zarr store is
        never deleted.
    multiscale : int or bool
        ``True`` or a number of levels > 1 writes an OME-Zarr multiscale group (NGFF 0.5
        for Zarr v3, 0.4 for v2) that napari and neuroglancer open; each level halves
        the previous one (mean for images, mode for labels) and is computed from the
        level already written, not from the source again. ``True`` means levels until
        the smallest axis would drop below 32 voxels.
    kind : {"image", "labels"}, optional
        How to downsample. Default: ``data.attrs["kind"]`` if present, else ``"image"``.
    compression : str or None
        Blosc compressor name (``"zstd"``, ``"lz4"``, …) or None.
    compression_level : int
        Blosc level.
    zarr_format : {3, 2}
        Zarr format version.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SaveResult
        The path, and how many chunks were written and skipped.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false (and it is not an interrupted write
        of the same shape, dtype and chunks).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "v.zarr")
    >>> save_volume(np.ones((4, 8, 8), np.uint8), out, chunks=(2, 8, 8), progress=False)
    SaveResult(path=PosixPath('...v.zarr'), chunks_written=2, chunks_skipped=0, levels=1)
    """
    import zarr

    path = Path(path)
    source_attrs = dict(data.attrs) if isinstance(data, xr.DataArray) else {}
    validate_volume(data)
    if source_attrs.get("source") and Path(source_attrs["source"]).resolve() == path.resolve():
        raise ValueError(f"refusing to write over the input volume's own store {path}")
    kind = kind or source_attrs.get("kind", "image")
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format}")

    array_in = unwrap(data)
    if not isinstance(array_in, da.Array):
        array_in = as_dask(array_in, chunks=chunks or "auto")
    if chunks is None:
        chunks = tuple(int(max(c)) for c in array_in.chunks)
    chunks = tuple(int(min(c, s)) for c, s in zip(chunks, array_in.shape, strict=True))
    array_in = array_in.rechunk(chunks)
    if is_cupy(array_in):
        array_in = array_in.map_blocks(
            lambda b: b.get(), dtype=array_in.dtype, meta=np.empty((0, 0, 0), array_in.dtype)
        )

    voxel_size = tuple(source_attrs.get("voxel_size", (1.0, 1.0, 1.0)))
    unit = source_attrs.get("unit", "voxel")
    attrs = {"voxel_size": list(voxel_size), "unit": unit, "kind": kind}
    for key in ("class_names",):
        if key in source_attrs:
            attrs[key] = source_attrs[key]

    n_levels = _n_levels(multiscale, array_in.shape)
    codec = _codec(compression, compression_level, zarr_format)
    resume = _prepare_target(path, overwrite)

    if n_levels == 1:
        array = _open_or_create(
            None, None, path, array_in, chunks, codec, zarr_format, _mark(attrs, False), resume
        )
        written, skipped = _write_array(array_in, array, progress, f"writing {path}")
        array.attrs.update(_mark(attrs, True))
        return SaveResult(path, written, skipped, 1)

    if resume:
        group = zarr.open_group(store=str(path), mode="r+")
    else:
        group = zarr.create_group(store=str(path), zarr_format=zarr_format)
        ms = multiscales_metadata(n_levels, voxel_size, unit, path.stem, kind)
        ngff = (
            {"ome": {"version": "0.5", "multiscales": [ms]}}
            if zarr_format == 3
            else {"multiscales": [{"version": "0.4", **ms}]}
        )
        group.attrs.update(_mark({**ngff, **attrs}, False))
    written = skipped = 0
    level_data = array_in
    for level in range(n_levels):
        name = str(level)
        if level > 0:
            previous = group[str(level - 1)]
            level_data = downsample(da.from_zarr(previous), kind)
        level_chunks = tuple(int(min(c, s)) for c, s in zip(chunks, level_data.shape, strict=True))
        level_data = level_data.rechunk(level_chunks)
        exists = resume and name in group
        array = _open_or_create(
            group, name, path, level_data, level_chunks, codec, zarr_format, {}, exists
        )
        w, s = _write_array(level_data, array, progress, f"writing {path} level {level}")
        written, skipped = written + w, skipped + s
    group.attrs.update(_mark(dict(group.attrs), True))
    return SaveResult(path, written, skipped, n_levels)


def _n_levels(multiscale: int | bool, shape: tuple[int, ...]) -> int:
    if multiscale is False or multiscale is None:
        return 1
    if multiscale is True:
        levels, smallest = 1, min(shape)
        while smallest // 2 >= 32:
            smallest //= 2
            levels += 1
        return max(levels, 2) if min(shape) >= 2 else 1
    levels = int(multiscale)
    if levels < 1:
        raise ValueError(f"multiscale must be True or a number of levels ≥ 1, got {multiscale}")
    if min(shape) >> (levels - 1) < 1:
        raise ValueError(f"{levels} levels would shrink shape {shape} to nothing")
    return levels
