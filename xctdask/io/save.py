"""``save_volume``: write a volume to Zarr chunk by chunk (or shard by shard), resumably.

How resume works: every output chunk (every shard, with ``shards=``) is written by
exactly one task, with ``write_empty_chunks`` on so that every finished chunk exists in
the store, and Zarr's local store writes each chunk atomically (temporary file, then
link). A store we create carries ``attrs["xctdask"]["complete"] = False`` until the
last chunk is in. A rerun on such an incomplete store lists the chunk keys already
present and computes only the others, so the source is not even computed for finished
chunks. The write is one Blockwise layer over the source, so the graph of a terabyte
write is not materialised on the client.

What is protected: the output may not be, contain, or lie inside any store or file the
written data are computed from (:mod:`xctdask.io.guard`); an existing output is only
replaced with ``overwrite=True``, and a folder that is not a Zarr store never is; a
write that fails before its first chunk leaves nothing behind.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from xctdask import _progress
from xctdask.backend import as_dask, to_host, unwrap, validate_volume
from xctdask.io.guard import check_output
from xctdask.io.locations import is_url, remote_exists
from xctdask.io.omezarr import downsample, multiscales_metadata
from xctdask.io.open import SERIES_DIMS  # a 4-D array's dims when it does not name them

__all__ = ["SaveResult", "check_store_path", "save_volume"]

_MARK = "xctdask"


@dataclass(frozen=True)
class SaveResult:
    """What ``save_volume`` did.

    Attributes
    ----------
    path : Path or str
        The store written (a ``str`` for URLs).
    chunks_written, chunks_skipped : int
        Chunks written now, and chunks found complete from an earlier interrupted run
        (summed over all pyramid levels).
    levels : int
        Number of resolution levels in the store (1 without a pyramid).
    """

    path: Path | str
    chunks_written: int
    chunks_skipped: int
    levels: int


_BLOSC = ("zstd", "lz4", "lz4hc", "blosclz", "zlib", "snappy")


def _codec(compression: str | None, level: int, zarr_format: int) -> Any:
    """The Blosc codec, with its settings checked before anything is written."""
    if compression is None:
        return None
    if compression not in _BLOSC:
        raise ValueError(f"compression must be one of {_BLOSC} or None, got {compression!r}")
    ok = isinstance(level, (int, np.integer)) and not isinstance(level, bool) and 0 <= level <= 9
    if not ok:
        raise ValueError(f"compression_level must be an integer 0..9, got {level!r}")
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname=compression, clevel=level, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname=compression, clevel=level)


class _Target:
    """Where a store goes: a local folder or an fsspec URL, with what zarr needs."""

    def __init__(self, path: str | os.PathLike, storage_options: dict | None):
        self.url = is_url(str(path))
        self.path: Path | str = str(path) if self.url else Path(path)
        self.storage_options = storage_options or {}
        if self.url:
            import fsspec

            self.fs, self.fs_path = fsspec.core.url_to_fs(str(path), **self.storage_options)

    @property
    def zarr_kwargs(self) -> dict[str, Any]:
        return {"storage_options": self.storage_options} if self.url else {}

    def exists(self) -> bool:
        if self.url:
            return remote_exists(self.fs, self.fs_path, str(self.path))
        return Path(self.path).exists()

    def check_container(self) -> None:
        """Refuse, before anything is written, a URL whose bucket (its first path
        component) does not exist: object stores do not create buckets on write."""
        if not self.url:
            return
        bucket = self.fs_path.strip("/").split("/")[0]
        if (
            bucket
            and bucket != self.fs_path.strip("/")
            and not remote_exists(self.fs, bucket, str(self.path))
        ):
            raise FileNotFoundError(
                f"cannot write {self.path}: its bucket {bucket!r} does not exist (create "
                "it first; object stores do not create buckets on write)"
            )

    def is_zarr_store(self) -> bool:
        names = ("zarr.json", ".zarray", ".zgroup")
        if self.url:
            return any(self.fs.exists(f"{self.fs_path}/{n}") for n in names)
        return _is_zarr_store(Path(self.path))

    def is_empty_folder(self) -> bool:
        if self.url:
            return self.fs.isdir(self.fs_path) and not self.fs.ls(self.fs_path)
        path = Path(self.path)
        return path.is_dir() and not any(path.iterdir())

    def remove(self) -> None:
        if self.url:
            self.fs.rm(self.fs_path, recursive=True)
        elif Path(self.path).is_dir():
            shutil.rmtree(self.path)
        else:
            Path(self.path).unlink()


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _grid(array: Any) -> tuple[int, ...]:
    """The write unit of ``array``: its shard shape if sharded, else its chunk shape."""
    shards = getattr(array, "shards", None)
    return tuple(int(c) for c in (shards or array.chunks))


def _existing_chunks(array: Any) -> set[tuple[int, ...]]:
    """Grid coordinates (chunks, or shards) whose keys are present in ``array``'s store."""
    from zarr.core.sync import sync

    store_path = array.store_path
    prefix = f"{store_path.path}/" if store_path.path else ""

    async def listing() -> list[str]:
        return [key async for key in store_path.store.list_prefix(prefix)]

    present = {key[len(prefix) :] for key in sync(listing())}
    grid = _grid(array)
    counts = [-(-n // g) for n, g in zip(array.shape, grid, strict=True)]
    cells = itertools.product(*(range(n) for n in counts))
    return {c for c in cells if array.metadata.encode_chunk_key(c) in present}


def _write_block(block: Any, array: Any = None, block_info: Any = None) -> np.ndarray:
    """Write one block (a whole chunk or shard) where it belongs; return a 1 per block."""
    region = tuple(slice(lo, hi) for lo, hi in block_info[0]["array-location"])
    array[region] = to_host(block)
    return np.ones((1,) * block.ndim, np.int64)


def _cells_of_blocks(data: da.Array, grid: tuple[int, ...]) -> dict[tuple, list[tuple]]:
    """The grid cells (chunks or shards) each Dask block of ``data`` covers."""
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in data.chunks]
    out = {}
    for index in itertools.product(*(range(n) for n in data.numblocks)):
        ranges = [
            range(int(s[i]) // g, -(-int(s[i + 1]) // g))
            for s, i, g in zip(starts, index, grid, strict=True)
        ]
        out[index] = list(itertools.product(*ranges))
    return out


def _aligned(data: da.Array, grid: tuple[int, ...]) -> da.Array:
    """``data`` with blocks that are unions of whole grid cells (one task then writes
    several chunks, and no two tasks touch one chunk): kept as they are when aligned,
    else rechunked to the grid."""
    chunks = []
    for c, g, n in zip(data.chunks, grid, data.shape, strict=True):
        bounds = np.cumsum(c)[:-1]
        aligned = all(int(b) % g == 0 for b in bounds)
        chunks.append(tuple(c) if aligned else tuple(_split(n, g)))
    chunks_t = tuple(chunks)
    return data if chunks_t == data.chunks else data.rechunk(chunks_t)


def _split(n: int, g: int) -> list[int]:
    return [g] * (n // g) + ([n % g] if n % g else [])


def _write_array(data: da.Array, array: Any, progress: bool, description: str) -> tuple[int, int]:
    """Write the blocks of ``data`` (unions of ``array``'s grid cells) not yet in its store.

    One Blockwise layer writes every block; on a resume only the keys of blocks with a
    missing cell are computed, so the source is not recomputed for finished ones.
    Returns the grid cells (chunks or shards) written and skipped.
    """
    from dask.delayed import Delayed

    present = _existing_chunks(array)
    cells = _cells_of_blocks(data, _grid(array))
    written = da.map_blocks(
        _write_block,
        data,
        array=array,
        chunks=tuple((1,) * len(c) for c in data.chunks),
        dtype=np.int64,
        meta=np.empty((0,) * data.ndim, np.int64),
        name="xctdask-write-" + _token(data, array),
    )
    todo = [b for b, covered in cells.items() if not all(c in present for c in covered)]
    skipped = sum(len(cells[b]) for b in cells if b not in set(todo))
    if not todo:
        return 0, skipped
    if len(todo) == len(cells):
        _progress.compute(written.sum(), progress=progress, description=description)
    else:
        graph = written.__dask_graph__()
        parts = [Delayed((written.name, *b), graph, layer=written.name) for b in todo]
        _progress.compute(*parts, progress=progress, description=description)
    return sum(len(cells[b]) for b in todo), skipped


def _token(data: da.Array, array: Any) -> str:
    from dask.base import tokenize

    return tokenize(data.name, str(array.store_path), array.shape)


def _mark(attrs: dict[str, Any], complete: bool, grid: Any = None) -> dict[str, Any]:
    from xctdask import __version__

    mark: dict[str, Any] = {"complete": complete, "version": __version__}
    if grid is not None:
        mark["grid"] = list(grid)
    return {**attrs, _MARK: mark}


def is_interrupted_write(path: str | Path, storage_options: dict | None = None) -> bool:
    """True if ``path`` is a Zarr store that :func:`save_volume` began and did not
    finish: calling ``save_volume`` again with the same volume resumes it.

    Examples
    --------
    >>> import tempfile, os
    >>> is_interrupted_write(os.path.join(tempfile.mkdtemp(), "none.zarr"))
    False
    """
    import zarr

    target = _Target(path, storage_options)
    if not target.exists() or not target.is_zarr_store():
        return False
    try:
        node = zarr.open(store=str(target.path), mode="r", **target.zarr_kwargs)
        mark = dict(node.attrs).get(_MARK, {})
    except Exception:  # an unreadable store is not ours to resume
        return False
    return mark.get("complete") is False


def _prepare_target(target: _Target, overwrite: bool) -> bool:
    """Decide between a fresh write and a resume; return True to resume."""

    if not target.exists():
        target.check_container()
        return False
    if target.is_empty_folder():  # holds nothing to lose, e.g. left by a failed tool
        target.remove()
        return False
    if overwrite:
        if not target.is_zarr_store():
            raise FileExistsError(
                f"{target.path} exists and is not a Zarr store; refusing to delete it even "
                "with overwrite=True"
            )
        target.remove()
        return False
    if is_interrupted_write(target.path, target.storage_options):
        return True
    raise FileExistsError(f"{target.path} already exists; pass overwrite=True to replace it")


def _check_resumable(array: Any, data: da.Array, grid: tuple[int, ...], path: Any) -> None:
    found = (tuple(array.shape), np.dtype(array.dtype), _grid(array))
    want = (tuple(data.shape), np.dtype(data.dtype), grid)
    if found != want:
        raise FileExistsError(
            f"{path} holds an interrupted write of shape/dtype/chunks {found}, which does "
            f"not match this volume {want}; pass overwrite=True to start again"
        )


def _open_or_create(
    parent: Any,
    name: str | None,
    target: _Target,
    data: da.Array,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    codec: Any,
    zarr_format: int,
    attrs: dict[str, Any],
    resume: bool,
) -> Any:
    import zarr

    if resume:
        array = zarr.open_array(
            store=str(target.path),
            path=name or "",
            mode="r+",
            config={"write_empty_chunks": True},
            **target.zarr_kwargs,
        )
        _check_resumable(array, data, shards or chunks, target.path)
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
    if shards is not None:
        kwargs["shards"] = shards
    if zarr_format == 3:
        kwargs["dimension_names"] = tuple(attrs.get("dims", ("z", "y", "x")))
    if parent is None:
        return zarr.create_array(
            store=str(target.path), zarr_format=zarr_format, **kwargs, **target.zarr_kwargs
        )
    return parent.create_array(name, **kwargs)


def _check_chunks(chunks: Any, name: str = "chunks", ndim: int = 3) -> tuple[int, ...] | None:
    """Three positive integers (z, y, x); for a 4-D series also four (t, z, y, x), and
    three mean one time step per chunk."""
    if chunks is None:
        return None
    lengths = (3, 4) if ndim == 4 else (3,)
    try:
        values = tuple(int(c) for c in chunks)
        ok = len(values) in lengths and all(v == c for v, c in zip(values, chunks, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok or min(values) < 1:
        also = " or four (t, z, y, x)" if ndim == 4 else ""
        raise ValueError(f"{name} must be three positive integers (z, y, x){also}, got {chunks!r}")
    return (1, *values) if len(values) < ndim else values


#: Suffixes of file formats a Zarr store should not be named after (a "scan.tif" that
#: is a folder of Zarr chunks would mislead every tool that sees the name).
OTHER_FORMATS = (
    ".tif", ".tiff", ".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi", ".raw", ".npy",
    ".npz", ".nii", ".gz", ".mrc", ".rec", ".png", ".jpg", ".jpeg", ".pt", ".json",
)  # fmt: skip


def check_store_path(path: str | os.PathLike, *, folder_of_stores: bool = False) -> None:
    """Refuse, before any work, an output store named like a file of another format.

    :func:`save_volume` writes Zarr stores (folders); given ``out.tif`` it would make a
    folder called ``out.tif``, which neither a TIFF reader nor a person expects.
    ``folder_of_stores`` words the refusal for an output folder that holds stores (the
    demo's and ``xctdask phantom``'s).

    Examples
    --------
    >>> check_store_path("labels.zarr"); check_store_path("s3://bucket/labels")
    >>> check_store_path("labels.tif")
    Traceback (most recent call last):
    ...
    ValueError: labels.tif names a .tif file, but xctdask writes Zarr stores ...
    """
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in OTHER_FORMATS:
        return
    if folder_of_stores:
        raise ValueError(
            f"{path} names a {suffix} file, but it would be a folder of Zarr stores: "
            f"choose a name without {suffix}"
        )
    raise ValueError(
        f"{path} names a {suffix} file, but xctdask writes Zarr stores (folders of "
        f"chunks): use a path ending in .zarr; to get a {suffix} file, convert the "
        "store afterwards (for example with tifffile or h5py)"
    )


def save_volume(
    data: Any,
    path: str | Path,
    *,
    chunks: tuple[int, int, int] | None = None,
    shards: tuple[int, int, int] | bool | None = None,
    overwrite: bool = False,
    multiscale: int | bool = False,
    kind: str | None = None,
    compression: str | None = "zstd",
    compression_level: int = 3,
    zarr_format: int = 3,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> SaveResult:
    """Write a volume to a Zarr store, chunk by chunk through Dask; resumable.

    This computes: it is the point where a lazy pipeline runs. Exactly one task writes
    each output chunk (each shard with ``shards``). If an earlier call on the same
    ``path`` was interrupted (a crash, a failing chunk, a killed job), calling again
    with the same volume writes only the chunks that are missing and leaves the
    finished ones alone.

    Parameters
    ----------
    data : array or DataArray
        A 3-D volume: NumPy, CuPy, Dask or an ``xarray.DataArray`` (its ``voxel_size``,
        ``unit`` and ``class_names`` attributes are stored). Or a 4-D ``(t, z, y, x)``
        series (``Segmenter.transform`` of one): its dims are stored, and
        :func:`xctdask.open_volume` gives the series back without being told them.
    path : str or Path
        Output store: a folder, or an fsspec URL (``s3://bucket/out.zarr``, ...). It
        must not exist unless ``overwrite=True`` or it holds an interrupted write of
        this same volume. It may not be, contain or lie inside any input of ``data``.
    chunks : tuple of int, optional
        Storage chunks (z, y, x); for a series also (t, z, y, x), and three values mean
        one time step per chunk. Default: the storage chunks ``data`` was opened with
        (``attrs["storage_chunks"]``, kept through ``predict``, ``pseudo_labels`` and
        ``Segmenter.transform``), else its Dask chunks (regularised). Dask blocks that are
        unions of whole chunks are written by one task each.
    shards : tuple of int or True, optional
        Zarr v3 sharding: ``shards`` voxels per shard file, a multiple of ``chunks``
        (``True``: the Dask chunks of ``data`` rounded up to a multiple of ``chunks``).
        A terabyte volume then is thousands of files instead of hundreds of thousands;
        each shard is written by one task and resume works shard by shard.
    overwrite : bool
        Replace an existing Zarr store at ``path``. A path that is not a Zarr store is
        never deleted (an empty folder is replaced without asking).
    multiscale : int or bool
        ``True`` or a number of levels > 1 writes an OME-Zarr multiscale group (NGFF 0.5
        for Zarr v3, 0.4 for v2) that napari and neuroglancer open; each level halves
        the previous one (mean for images, mode for labels) and is computed from the
        level already written, not from the source again. ``True`` means levels until
        the smallest axis would drop below 32 voxels. 3-D volumes only.
    kind : {"image", "labels"}, optional
        How to downsample. Default: ``data.attrs["kind"]`` if present, else ``"image"``.
    compression : str or None
        Blosc compressor name (``"zstd"``, ``"lz4"``, …) or None.
    compression_level : int
        Blosc level.
    zarr_format : {3, 2}
        Zarr format version (sharding needs 3).
    storage_options : dict, optional
        Options of the URL's fsspec filesystem (credentials, endpoint).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SaveResult
        The path, and how many chunks (shards) were written and skipped.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false (and it is not an interrupted write
        of the same shape, dtype and chunks).
    ValueError
        ``path`` is, contains or lies inside a store that ``data`` is read from; bad
        ``chunks``, ``shards``, ``kind`` or ``zarr_format``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "v.zarr")
    >>> save_volume(np.ones((4, 8, 8), np.uint8), out, chunks=(2, 8, 8), progress=False)
    SaveResult(path=PosixPath('...v.zarr'), chunks_written=2, chunks_skipped=0, levels=1)
    """
    import zarr

    source_attrs = dict(data.attrs) if isinstance(data, xr.DataArray) else {}
    validate_volume(data, ndim=(3, 4))
    ndim = unwrap(data).ndim
    if ndim == 4 and _n_levels(multiscale, unwrap(data).shape) > 1:
        raise ValueError(
            "multiscale needs a 3-D volume; save each time step of a (t, z, y, x) series "
            "as a multiscale store of its own"
        )
    chunks = _check_chunks(chunks, ndim=ndim)
    kind = kind or source_attrs.get("kind", "image")
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    dtype = np.dtype(unwrap(data).dtype)
    if kind == "labels" and dtype.kind not in "biu":
        raise ValueError(  # the pyramid's mode and every reader of labels want classes
            f"kind='labels' needs integer class numbers; this volume holds {dtype} grey "
            "values (save it as kind='image')"
        )
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format}")
    if shards is not None and shards is not False and zarr_format != 3:
        raise ValueError("shards need zarr_format=3")
    check_store_path(path)
    check_output(path, data, inputs=[source_attrs.get("source")])

    array_in = unwrap(data)
    if not isinstance(array_in, da.Array):
        array_in = as_dask(array_in, chunks=chunks or "auto")
    if chunks is None:  # the storage chunks the volume came with, else its Dask chunks
        stored = source_attrs.get("storage_chunks")
        if stored and len(stored) == 3 and ndim == 4:  # a series of stored volumes
            stored = [1, *stored]
        elif stored and len(stored) == 4 and ndim == 3:  # one step of a stored series
            stored = stored[1:]
        if stored and len(stored) == array_in.ndim:
            chunks = tuple(int(c) for c in stored)
        else:
            chunks = tuple(int(max(c)) for c in array_in.chunks)
    chunks = tuple(int(min(c, s)) for c, s in zip(chunks, array_in.shape, strict=True))
    shard_shape = _shard_shape(shards, chunks, array_in)
    grid = shard_shape or chunks
    array_in = _aligned(array_in, grid)

    voxel_size = tuple(source_attrs.get("voxel_size", (1.0, 1.0, 1.0)))
    unit = source_attrs.get("unit", "voxel")
    attrs = {"voxel_size": list(voxel_size), "unit": unit, "kind": kind}
    if ndim == 4:  # open_volume gives the series back with these dims
        attrs["dims"] = list(data.dims) if isinstance(data, xr.DataArray) else list(SERIES_DIMS)
    for key in ("class_names",):
        if key in source_attrs:
            attrs[key] = source_attrs[key]

    n_levels = _n_levels(multiscale, array_in.shape)
    codec = _codec(compression, compression_level, zarr_format)
    target = _Target(path, storage_options)
    resume = _prepare_target(target, overwrite)
    written = skipped = 0
    try:
        if n_levels == 1:
            array = _open_or_create(
                None,
                None,
                target,
                array_in,
                chunks,
                shard_shape,
                codec,
                zarr_format,
                _mark(attrs, False),
                resume,
            )
            written, skipped = _write_array(array_in, array, progress, f"writing {path}")
            array.attrs.update(
                _mark(attrs, True, [-(-n // g) for n, g in zip(array_in.shape, grid, strict=True)])
            )
            return SaveResult(target.path, written, skipped, 1)

        if resume:
            group = zarr.open_group(store=str(target.path), mode="r+", **target.zarr_kwargs)
        else:
            group = zarr.create_group(
                store=str(target.path), zarr_format=zarr_format, **target.zarr_kwargs
            )
            stem = str(path).rstrip("/").split("/")[-1].rsplit(".", 1)[0]
            ms = multiscales_metadata(n_levels, voxel_size, unit, stem, kind)
            ngff = (
                {"ome": {"version": "0.5", "multiscales": [ms]}}
                if zarr_format == 3
                else {"multiscales": [{"version": "0.4", **ms}]}
            )
            group.attrs.update(_mark({**ngff, **attrs}, False))
        level_data = array_in
        for level in range(n_levels):
            name = str(level)
            if level > 0:
                previous = group[str(level - 1)]
                level_data = downsample(da.from_zarr(previous), kind)
            level_chunks = tuple(
                int(min(c, s)) for c, s in zip(chunks, level_data.shape, strict=True)
            )
            level_shards = (
                None
                if shard_shape is None
                else tuple(
                    int(min(s, -(-n // c) * c))
                    for s, c, n in zip(shard_shape, level_chunks, level_data.shape, strict=True)
                )
            )
            level_data = _aligned(level_data, level_shards or level_chunks)
            exists = resume and name in group
            array = _open_or_create(
                group,
                name,
                target,
                level_data,
                level_chunks,
                level_shards,
                codec,
                zarr_format,
                {},
                exists,
            )
            w, s = _write_array(level_data, array, progress, f"writing {path} level {level}")
            written, skipped = written + w, skipped + s
        group.attrs.update(_mark(dict(group.attrs), True))
        return SaveResult(target.path, written, skipped, n_levels)
    except BaseException:
        if not resume and written == 0 and _nothing_written(target):
            target.remove()  # a failed fresh write leaves nothing behind
        raise


def _nothing_written(target: _Target) -> bool:
    """True if the store holds metadata only (no chunk was written yet)."""
    if not target.exists():
        return False
    if target.url:
        files = target.fs.find(target.fs_path)
        names = [f.rsplit("/", 1)[-1] for f in files]
    else:
        names = [p.name for p in Path(target.path).rglob("*") if p.is_file()]
    return all(n in ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata") for n in names)


def _shard_shape(shards: Any, chunks: tuple[int, ...], data: da.Array) -> tuple[int, ...] | None:
    if shards is None or shards is False:
        return None
    if shards is True:
        wanted = tuple(int(max(c)) for c in data.chunks)
    else:
        wanted = _check_chunks(shards, "shards", data.ndim)
        if any(s % c for s, c in zip(wanted, chunks, strict=True)):
            raise ValueError(f"shards {wanted} must be a multiple of chunks {chunks}")
    return tuple(
        int(min(-(-w // c) * c, -(-n // c) * c))
        for w, c, n in zip(wanted, chunks, data.shape, strict=True)
    )


def _n_levels(multiscale: int | bool, shape: tuple[int, ...]) -> int:
    if multiscale is False or multiscale is None:
        return 1
    if multiscale is True:
        levels, smallest = 1, min(shape)
        while smallest // 2 >= 32:
            smallest //= 2
            levels += 1
        return max(levels, 2) if min(shape) >= 2 else 1
    if not isinstance(multiscale, (int, np.integer)) or multiscale < 1:
        raise ValueError(
            f"multiscale must be True or a whole number of levels ≥ 1, got {multiscale!r}"
        )
    levels = int(multiscale)
    if min(shape) >> (levels - 1) < 1:
        raise ValueError(f"{levels} levels would shrink shape {shape} to nothing")
    return levels
