"""``open_volume``: any supported source to a lazy ``xarray.DataArray`` (z, y, x)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from xctdask.backend import validate_volume
from xctdask.io.locations import is_url
from xctdask.io.omezarr import read_multiscales
from xctdask.io.rawinfo import info_path_for, read_raw_info
from xctdask.io.readers import (
    Hdf5Reader,
    MultiPageTiffReader,
    NpyReader,
    RawReader,
    TiffStackReader,
    VolumeReader,
    ZarrReader,
)

__all__ = ["as_volume", "each_time_step", "grown_chunks", "open_volume", "time_steps"]

DIMS = ("z", "y", "x")
SERIES_DIMS = ("t", "z", "y", "x")
_KEPT = ("voxel_size", "unit", "kind", "class_names", "storage_chunks")
_TIFF = (".tif", ".tiff")
_HDF5 = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")


def _looks_like_zarr(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")
    )


def open_zarr(source: str | Path, mode: str = "r", storage_options: dict | None = None) -> Any:
    """Open a Zarr array or group at a local path or an fsspec URL (``s3://``, ``gs://``,
    ``https://``, ``zip://``, ``file://``), with ``storage_options`` for the URL's
    filesystem (credentials, endpoint).

    Raises
    ------
    OSError
        The store cannot be read (naming it and zarr's reason).
    """
    import zarr

    kwargs = {"storage_options": storage_options} if storage_options and is_url(str(source)) else {}
    try:
        return zarr.open(store=str(source), mode=mode, **kwargs)
    except Exception as err:  # zarr raises several types for unreadable stores
        if mode == "r" and is_url(str(source)) and not _url_exists(str(source), storage_options):
            raise FileNotFoundError(f"no such Zarr store: nothing at {source}") from None
        raise OSError(f"cannot read Zarr store {source}: {err}") from err


def _url_exists(url: str, storage_options: dict | None) -> bool:
    """Whether anything is at ``url`` (True when that cannot be told: the caller then
    reports the reader's own error, e.g. a missing back-end or bad credentials). HTTP
    cannot tell: its ``exists`` says False for a server that cannot be reached too."""
    from xctdask.io.locations import exists

    if url.split("://", 1)[0].lower() in ("http", "https"):
        return True
    try:
        return exists(url, storage_options)
    except Exception:
        return True


def _zarr_source(
    path: Path | str, dataset: str | None, level: int, storage_options: dict | None = None
) -> tuple[Any, dict[str, Any], bool]:
    """The zarr array to read, the metadata that locates it, and whether xctdask wrote
    the store to completion (then every chunk must be present)."""
    import zarr

    node = open_zarr(path, "r", storage_options)
    meta: dict[str, Any] = {}
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise ValueError(f"{path} is a single Zarr array; dataset={dataset!r} does not apply")
        _no_levels(path, level)
        attrs = dict(node.attrs)
        return node, attrs, _complete(attrs)
    group_attrs = dict(node.attrs)
    if dataset is None:
        multiscales = read_multiscales(group_attrs)
        if multiscales is not None:
            datasets = multiscales["datasets"]
            if not 0 <= level < len(datasets):
                raise ValueError(
                    f"{path} has {len(datasets)} multiscale levels; level={level} is out of range"
                )
            entry = datasets[level]
            dataset = entry["path"]
            for t in entry.get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    meta["voxel_size"] = tuple(float(s) for s in t["scale"][-3:])
            axes = multiscales.get("axes", [])
            units = [ax.get("unit") if isinstance(ax, dict) else None for ax in axes[-3:]]
            if units and units[0]:
                meta["unit"] = units[0]
            if len(axes) > 3:  # (t, c, z, y, x) and kin: which axes are not space
                meta["ome_axes"] = [_axis_kind(ax) for ax in axes]
        else:
            _no_levels(path, level)
            arrays = sorted(name for name, _ in node.arrays())
            if len(arrays) != 1:
                raise ValueError(
                    f"{path} is a Zarr group with arrays {arrays}; choose one with dataset="
                )
            dataset = arrays[0]
    if dataset not in node:
        raise KeyError(f"Zarr group {path} has no array {dataset!r}")
    array = node[dataset]
    attrs = {**{k: v for k, v in group_attrs.items() if k not in ("ome", "multiscales")}}
    attrs.update(dict(array.attrs))
    attrs.update(meta)
    return array, attrs, _complete(group_attrs) or _complete(dict(array.attrs))


def _axis_kind(axis: Any) -> str:
    """An NGFF axis as "time", "channel" or "space" (0.3 names them only: t, c, z...)."""
    if isinstance(axis, dict):
        kind = axis.get("type")
        if kind in ("time", "channel", "space"):
            return kind
        axis = axis.get("name", "")
    return {"t": "time", "c": "channel"}.get(str(axis).lower(), "space")


def _ome_layout(array: Any, attrs: dict[str, Any], where: Any) -> tuple[dict[int, int], bool]:
    """The axes of an OME-Zarr image beyond (z, y, x) to hold at index 0 (a singleton
    channel or time axis), and whether a time axis of several steps stays (a series).

    Several channels are refused: xctdask reads grey-value scans."""
    kinds = attrs.get("ome_axes")
    if not kinds or len(kinds) != len(array.shape):
        return {}, False
    fixed, series = {}, False
    for axis, (kind, size) in enumerate(zip(kinds, array.shape, strict=True)):
        if kind == "space":
            continue
        if size == 1:
            fixed[axis] = 0
        elif kind == "time" and not series:
            series = True
        else:
            raise ValueError(
                f"{where} is an OME-Zarr image with {size} channels (axes "
                f"{', '.join(kinds)}, shape {tuple(array.shape)}); xctdask reads one grey "
                "value per voxel: write the channel you want to its own store first"
            )
    if sum(k == "space" for k in kinds) != 3:
        return {}, False
    return fixed, series


def _no_levels(path: Any, level: int) -> None:
    """Refuse a pyramid level of a source that has no pyramid (it read level 0)."""
    if level != 0:
        raise ValueError(
            f"{path} is not a multiscale (OME-Zarr) store; level={level} does not exist "
            "(level 0, the default, is its only resolution)"
        )


def _check_chunks(chunks: Any) -> None:
    """Dask's chunk specs, with zero and negative sizes refused in words (Dask divides by
    them); ``-1`` (a whole axis), ``"auto"`` and ``None`` pass."""
    if isinstance(chunks, dict):
        sizes = list(chunks.values())
    elif isinstance(chunks, (tuple, list)):
        sizes = list(chunks)
    else:
        return
    for size in sizes:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            if size == 0 or size < -1:
                raise ValueError(
                    f"chunks must be positive sizes (or -1 for a whole axis), got {chunks!r}"
                )


def _complete(attrs: dict[str, Any]) -> bool:
    mark = attrs.get("xctdask")
    return isinstance(mark, dict) and mark.get("complete") is True


def _nexus_default(f: Any) -> str | None:
    """Follow NeXus ``default``/``signal`` attributes to the plotted dataset, if any."""
    node, path = f, ""
    for _ in range(4):
        target = node.attrs.get("default")
        if target is None:
            break
        target = target.decode() if isinstance(target, bytes) else str(target)
        path = f"{path}/{target}"
        node = f[path]
    signal = node.attrs.get("signal") if path else None
    if signal is None:
        return None
    signal = signal.decode() if isinstance(signal, bytes) else str(signal)
    return f"{path}/{signal}"


def _hdf5_dataset(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        default = _nexus_default(f)
        if default is not None:
            return default
        candidates: list[str] = []
        f.visititems(
            lambda name, obj: (
                candidates.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim >= 3 else None
            )
        )
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        f"{path} holds {len(candidates)} datasets of 3 or more dimensions "
        f"({', '.join(candidates) or 'none'}); name one with dataset=..."
    )


def _reader_for(path: Path, dataset: str | None) -> VolumeReader:
    suffix = path.suffix.lower()
    if path.is_dir():
        return TiffStackReader(path)
    if suffix in _TIFF:
        return MultiPageTiffReader(path)
    if suffix in _HDF5:
        return Hdf5Reader(path, dataset or _hdf5_dataset(path))
    if suffix == ".npy":
        return NpyReader(path)
    if suffix == ".raw" or info_path_for(path).exists():
        info = read_raw_info(path)
        reader = RawReader(path, info.shape, info.dtype)
        reader.attrs = {"voxel_size": info.voxel_size, "unit": info.unit}
        return reader
    raise ValueError(
        f"unknown volume format for {path}: expected a Zarr store (folder with zarr.json or "
        ".zarray), a .tif/.tiff file or folder of them, .raw with .raw.info, a NumPy .npy "
        f"file, or HDF5/NeXus ({', '.join(_HDF5)})"
    )


def _target_bytes() -> int:
    """Dask's own chunk-size setting (``array.chunk-size``, 128 MiB by default)."""
    import dask
    from dask.utils import parse_bytes

    return int(parse_bytes(dask.config.get("array.chunk-size")))


def _default_chunks(shape: tuple[int, ...], dtype: np.dtype, target_bytes: int | None = None):
    """Slabs of whole slices along z, about ``target_bytes`` each."""
    target_bytes = target_bytes or _target_bytes()
    slice_bytes = int(np.prod(shape[1:])) * dtype.itemsize
    nz = max(1, min(shape[0], target_bytes // max(slice_bytes, 1)))
    return (nz, *shape[1:]) if slice_bytes <= target_bytes else "auto"


def grown_chunks(
    grid: tuple[int, ...], shape: tuple[int, ...], itemsize: int, target_bytes: int | None = None
) -> tuple[int, ...]:
    """Dask chunks made of whole storage chunks, up to ``target_bytes`` each.

    Storage chunks of a few MB make one Dask task each per pass: at a terabyte that is
    hundreds of thousands of tasks, and the client alone spends minutes on them. The
    chunks grow by doubling, first in y and x (up to whole slices), then in z, while
    they stay within ``target_bytes`` (default: Dask's ``array.chunk-size``). Every
    Dask chunk is a union of whole storage chunks, so a task reads, and later writes,
    whole chunks only.

    Examples
    --------
    >>> grown_chunks((64, 256, 256), (2048, 2048, 2048), 2, 128 * 2**20)
    (64, 1024, 1024)
    >>> grown_chunks((8, 32, 32), (16, 40, 40), 4, 128 * 2**20)
    (16, 40, 40)
    """
    target = target_bytes or _target_bytes()
    chunks = [min(g, n) for g, n in zip(grid, shape, strict=True)]
    order = [len(shape) - 1, len(shape) - 2, *range(len(shape) - 3, -1, -1)]
    order = [a for a in order if a >= 0]
    for axes in (order[:2], order[2:3]):  # y and x together first, then z
        grew = True
        while grew:
            grew = False
            for a in sorted(axes, key=lambda i: chunks[i]):
                if chunks[a] >= shape[a]:
                    continue
                trial = list(chunks)
                trial[a] = min(shape[a], chunks[a] * 2)
                if int(np.prod(trial)) * itemsize <= target:
                    chunks, grew = trial, True
    return tuple(int(c) for c in chunks)


def as_volume(
    data: Any,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    unit: str | None = None,
    dims: tuple[str, ...] = DIMS,
    attrs: dict[str, Any] | None = None,
    name: str | None = None,
) -> xr.DataArray:
    """Wrap an array as a volume DataArray with spatial coordinates and metadata.

    A DataArray passes through (its attributes kept, new ones added); any other array
    becomes a DataArray with ``dims``, and coordinates ``index × voxel_size``.
    """
    attrs = dict(attrs or {})
    if isinstance(data, xr.DataArray):
        validate_volume(data, ndim=len(data.dims))
        out = data.copy(deep=False)
        if voxel_size is not None:
            out.attrs["voxel_size"] = _voxel_tuple(voxel_size, out.ndim)
        if unit is not None:
            out.attrs["unit"] = unit
        out.attrs.setdefault("voxel_size", _voxel_tuple(1.0, out.ndim))
        out.attrs.setdefault("unit", "voxel")
        return out
    validate_volume(data, ndim=len(dims))
    if voxel_size is not None:
        vs = _voxel_tuple(voxel_size, len(dims))
    else:
        try:
            vs = _voxel_tuple(attrs.get("voxel_size"), len(dims))
        except (TypeError, ValueError) as err:  # a file's metadata: open it all the same
            warnings.warn(
                f"{err} in the file's metadata; using 1 voxel instead (pass voxel_size= to set it)",
                stacklevel=3,
            )
            vs, attrs["unit"] = _voxel_tuple(None, len(dims)), "voxel"
    attrs["voxel_size"] = vs
    attrs["unit"] = unit or attrs.get("unit") or "voxel"
    spatial = dims[-3:]
    coords = {
        dim: np.arange(n) * step
        for dim, n, step in zip(spatial, data.shape[-3:], vs[-3:], strict=True)
    }
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=name)


def _check_dims(dims: Any) -> None:
    """Three or four distinct dim names (xarray only warns about duplicates)."""
    names = tuple(dims) if isinstance(dims, (tuple, list)) else None
    if not names or len(set(names)) != len(names) or len(names) not in (3, 4):
        raise ValueError(
            f"dims must be 3 or 4 distinct names, e.g. ('z', 'y', 'x') or ('t', 'z', 'y', "
            f"'x'), got {dims!r}"
        )


def _takes_dataset(source: Any) -> bool:
    """Whether ``dataset=`` means something for ``source``: an HDF5/NeXus file, a Zarr
    store (a group holds arrays by name) or a URL (a Zarr store)."""
    if isinstance(source, str) and is_url(source):
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    return path.suffix.lower() in _HDF5 or _looks_like_zarr(path) or path.suffix == ".zarr"


def _voxel_tuple(value: Any, ndim: int) -> tuple[float, ...]:
    n = min(ndim, 3)
    if value is None:
        return (1.0,) * n
    if np.isscalar(value):
        value = (float(value),) * n
    value = tuple(float(v) for v in value)
    if len(value) != n:
        raise ValueError(f"voxel_size needs 1 or {n} values, got {value}")
    if not all(np.isfinite(v) and v > 0 for v in value):
        raise ValueError(f"voxel_size must be positive and finite, got {value}")
    return value


def open_volume(
    source: Any,
    chunks: Any = None,
    *,
    dataset: str | None = None,
    level: int = 0,
    voxel_size: float | tuple[float, float, float] | None = None,
    unit: str | None = None,
    dims: tuple[str, ...] = DIMS,
    storage_options: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Open a CT volume lazily as an ``xarray.DataArray`` with dims ``("z", "y", "x")``.

    Nothing is read but metadata: the result is backed by a Dask array with one read
    task per chunk.

    Parameters
    ----------
    source : path, URL or array
        A Zarr v2/v3 store (array or group; an OME-Zarr multiscale group opens at
        ``level``), local or at an fsspec URL (``s3://``, ``gs://``, ``https://``,
        ``zip://``), a multi-page TIFF or a folder of 2-D TIFF slices, a ``.raw`` file with
        its ``.raw.info`` (PyHST / tomo2seg), an HDF5 or NeXus file, a NumPy ``.npy``
        file (memory-mapped), or a NumPy, CuPy, Dask array or DataArray (wrapped, never
        copied).
    chunks : optional
        Dask chunks. Default: for Zarr and chunked HDF5, unions of whole storage chunks
        of up to Dask's ``array.chunk-size`` (128 MiB unless configured; see
        :func:`grown_chunks`), so a terabyte volume is thousands of tasks, not hundreds
        of thousands; slabs of whole z slices of that size for other formats;
        ``"auto"`` for in-memory arrays. The storage chunks are kept in
        ``attrs["storage_chunks"]``: :func:`xctdask.save_volume` writes results with
        them.
    dataset : str, optional
        The array inside an HDF5 file or Zarr group. HDF5 files that hold one 3-D
        dataset, or NeXus files with a ``default`` plot, need none.
    level : int
        The multiscale level of an OME-Zarr group (0 is full resolution).
    voxel_size, unit : optional
        Override the voxel size (one value or one per axis) and its unit; otherwise
        they come from the store's metadata, or default to 1 ``"voxel"``.
    dims : tuple of str
        Dimension names. A volume must be 3-D unless you name four dims, e.g.
        ``("t", "z", "y", "x")`` for a time series.
    storage_options : dict, optional
        Options of the URL's fsspec filesystem, e.g. ``{"endpoint_url": ..., "key":
        ..., "secret": ...}`` for S3.

    A store that :func:`xctdask.save_volume` wrote to completion is *verified* as it is
    read: a chunk missing from it (deleted or lost since) is an error naming the chunk,
    not a block of zeros. A chunk that cannot be decoded is an error naming it too.

    Returns
    -------
    xarray.DataArray
        Dask-backed, with coordinates in physical units and ``attrs["voxel_size"]``,
        ``attrs["unit"]`` and ``attrs["source"]``.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        Unknown format, an ambiguous or missing HDF5 dataset, or a volume that is not
        3-D (or ``len(dims)``-D).
    TypeError
        Non-numeric voxels.
    OSError
        A store that exists but cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> vol = open_volume(np.zeros((4, 5, 6), np.uint8), voxel_size=0.5, unit="um")
    >>> vol.dims, vol.attrs["voxel_size"], float(vol.x[-1])
    (('z', 'y', 'x'), (0.5, 0.5, 0.5), 2.5)
    """
    _check_chunks(chunks)
    _check_dims(dims)
    if voxel_size is not None and not all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in np.atleast_1d(np.asarray(voxel_size, dtype=object))
    ):
        raise TypeError(
            f"voxel_size must be a number or three numbers (z, y, x), got {voxel_size!r}; "
            "give the unit with unit=, e.g. voxel_size=0.65, unit='micrometer'"
        )
    if dataset is not None and not _takes_dataset(source):
        raise ValueError(
            f"dataset={dataset!r} names an array inside an HDF5/NeXus file or a Zarr group; "
            + (
                f"{source} is neither"
                if isinstance(source, (str, os.PathLike))
                else f"this source is a {type(source).__name__}"
            )
        )
    if isinstance(source, xr.DataArray):
        data = source if chunks is None and source.chunks else source.chunk(chunks or "auto")
        return as_volume(data, voxel_size=voxel_size, unit=unit)
    if isinstance(source, str) and is_url(source):
        array, attrs, complete = _zarr_source(source, dataset, level, storage_options)
        return _from_zarr(array, attrs, complete, source, chunks, voxel_size, unit, dims)
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), chunks, dataset, level, voxel_size, unit, dims)
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        validate_volume(source, ndim=len(dims))
        data = source if isinstance(source, da.Array) and chunks is None else None
        if data is None:
            data = (
                source.rechunk(chunks)
                if isinstance(source, da.Array)
                else da.from_array(source, chunks=chunks or "auto", asarray=False)
            )
        return as_volume(data, voxel_size=voxel_size, unit=unit, dims=dims)
    raise TypeError(f"cannot open a volume from {type(source).__name__}")


def _open_path(path, chunks, dataset, level, voxel_size, unit, dims) -> xr.DataArray:
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if _looks_like_zarr(path) or (path.suffix == ".zarr" and path.is_dir()):
        array, attrs, complete = _zarr_source(path, dataset, level)
        return _from_zarr(array, attrs, complete, str(path), chunks, voxel_size, unit, dims)
    else:
        _no_levels(path, level)
        reader = _reader_for(path, dataset)
        validate_volume(reader, name=str(path), ndim=len(dims))
        attrs = {k: v for k, v in getattr(reader, "attrs", {}).items() if v is not None}
        stored = getattr(reader, "chunks", None)
        if chunks is None:
            chunks = (
                grown_chunks(stored, reader.shape, reader.dtype.itemsize)
                if stored
                else _default_chunks(reader.shape, reader.dtype)
            )
        if stored:
            attrs["storage_chunks"] = list(stored)
        data = da.from_array(
            reader,
            chunks=chunks,
            lock=False,
            asarray=True,
            name=f"open-volume-{tokenize(reader.token(), chunks)}",
            meta=np.empty((0,) * reader.ndim, reader.dtype),
        )
    attrs = {k: v for k, v in attrs.items() if k in _KEPT}
    attrs["source"] = str(path)
    return as_volume(
        data, voxel_size=voxel_size, unit=unit, dims=dims, attrs=attrs, name=path.stem or None
    )


def _from_zarr(array, attrs, complete, where, chunks, voxel_size, unit, dims) -> xr.DataArray:
    """A Zarr array as a volume: one read task per chunk through :class:`ZarrReader`.

    A 4-D store that :func:`xctdask.save_volume` wrote names its dims (``attrs["dims"]``):
    it opens as that series unless the caller named other dims."""
    stored_dims = attrs.get("dims")
    if dims == DIMS and len(array.shape) == 4 and stored_dims and len(stored_dims) == 4:
        dims = tuple(str(d) for d in stored_dims)
    fixed, series = _ome_layout(array, attrs, where)
    reader = ZarrReader(array, str(where), verify=complete, fixed=fixed)
    if series and dims == DIMS:  # an OME-Zarr time series: (t, z, y, x)
        dims = SERIES_DIMS
    validate_volume(reader, name=str(where), ndim=len(dims))
    if chunks is None:
        chunks = grown_chunks(reader.grid, reader.shape, reader.dtype.itemsize)
    data = da.from_array(
        reader,
        chunks=chunks,
        lock=False,
        asarray=True,
        name=f"open-volume-{tokenize(reader.token(), chunks)}",
        meta=np.empty((0,) * reader.ndim, reader.dtype),
    )
    attrs = {k: v for k, v in attrs.items() if k in _KEPT}
    attrs["source"] = str(where)
    attrs["storage_chunks"] = list(reader.chunks)
    name = str(where).rstrip("/").split("/")[-1].rsplit(".", 1)[0] or None
    return as_volume(data, voxel_size=voxel_size, unit=unit, dims=dims, attrs=attrs, name=name)


def time_steps(vol: Any) -> list[Any]:
    """The 3-D volumes of a ``(t, z, y, x)`` series, lazily.

    When the series comes straight from a store (:func:`open_volume` with four dims),
    each step is a volume of its own reader, so ``predict`` reads each step's regions
    from the store in its block tasks (a compact graph whatever the number of steps);
    otherwise each step is ``vol[t]``.

    Examples
    --------
    >>> series = open_volume(np.zeros((3, 2, 4, 4), np.float32), dims=("t", "z", "y", "x"))
    >>> [s.shape for s in time_steps(series)]
    [(2, 4, 4), (2, 4, 4), (2, 4, 4)]
    """
    from xctdask.backend import unwrap
    from xctdask.inference.predict import store_reader
    from xctdask.io.readers import TimeStepReader

    data = unwrap(vol)
    if getattr(data, "ndim", 0) != 4:
        raise ValueError(f"a time series is 4-D (t, z, y, x); got shape {tuple(data.shape)}")
    reader = store_reader(data) if isinstance(data, da.Array) else None
    steps = []
    for t in range(data.shape[0]):
        if reader is None:
            step = vol[t] if isinstance(vol, xr.DataArray) else as_volume(data[t])
        else:
            part = TimeStepReader(reader, t)
            array = da.from_array(
                part,
                chunks=data.chunks[1:],
                lock=False,
                asarray=True,
                name=f"open-volume-{tokenize(part.token(), data.chunks[1:])}",
                meta=np.empty((0, 0, 0), part.dtype),
            )
            attrs = dict(vol.attrs) if isinstance(vol, xr.DataArray) else {}
            if "storage_chunks" in attrs:
                attrs["storage_chunks"] = list(attrs["storage_chunks"])[1:]
            step = as_volume(array, attrs=attrs)
            if isinstance(vol, xr.DataArray):
                step = step.assign_coords(
                    {d: vol.coords[d] for d in vol.dims[1:] if d in vol.coords}
                )
        steps.append(step)
    return steps


def each_time_step(function: Any, vol: Any) -> xr.DataArray:
    """``function`` applied to every step of a ``(t, z, y, x)`` series (lazily, see
    :func:`time_steps`), the results joined along a leading ``t`` dim.

    Examples
    --------
    >>> series = open_volume(np.zeros((3, 2, 4, 4), np.float32), dims=("t", "z", "y", "x"))
    >>> each_time_step(lambda step: step + 1, series).dims
    ('t', 'z', 'y', 'x')
    """
    return xr.concat([function(step) for step in time_steps(vol)], dim="t")
