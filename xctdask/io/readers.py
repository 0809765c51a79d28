"""Lazy, picklable readers for file formats that Dask cannot open by itself.

Each reader knows its ``shape`` and ``dtype`` and reads a region on ``reader[key]``,
opening its file for that one call. Nothing holds an open file handle, so a reader can
be pickled and shipped to Dask workers (an open ``h5py`` dataset cannot), and
``dask.array.from_array(reader, ...)`` gives one read task per chunk.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Hdf5Reader",
    "MultiPageTiffReader",
    "NpyReader",
    "RawReader",
    "TiffStackReader",
    "TimeStepReader",
    "VolumeReader",
    "ZarrReader",
    "natural_sort",
]


def natural_sort(paths: list[Path]) -> list[Path]:
    """Sort paths so that ``slice_2`` comes before ``slice_10``."""

    def key(p: Path) -> list[Any]:
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]

    return sorted(paths, key=key)


def _normalise_key(key: Any, shape: tuple[int, ...]) -> tuple[slice, ...]:
    if not isinstance(key, tuple):
        key = (key,)
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            out.append(slice(*k.indices(n)))
        elif isinstance(k, (int, np.integer)):
            i = int(k) + (n if k < 0 else 0)
            out.append(slice(i, i + 1, 1))
        else:
            raise TypeError(f"readers take slices or integers, got {k!r}")
    return tuple(out)


def _squeeze_ints(key: Any, block: np.ndarray) -> np.ndarray:
    key = key if isinstance(key, tuple) else (key,)
    axes = tuple(i for i, k in enumerate(key) if isinstance(k, (int, np.integer)))
    return block.squeeze(axis=axes) if axes else block


class VolumeReader(ABC):
    """A region-on-demand view of a volume stored in a file.

    Subclasses set ``shape``, ``dtype`` and ``path`` and implement ``_read`` for a tuple
    of slices with step 1 or more.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    path: Path

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @abstractmethod
    def _read(self, key: tuple[slice, ...]) -> np.ndarray: ...

    def __getitem__(self, key: Any) -> np.ndarray:
        block = self._read(_normalise_key(key, self.shape))
        return _squeeze_ints(key, block)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def token(self) -> tuple[Any, ...]:
        """What identifies the data read: class, path, size and modification time."""
        stat = os.stat(self.path)
        return (type(self).__name__, str(self.path), stat.st_size, stat.st_mtime_ns)

    @property
    def source_location(self) -> str:
        """The canonical location read (see :mod:`xctdask.io.locations`)."""
        from xctdask.io.locations import location

        return location(self.path)


class RawReader(VolumeReader):
    """Headerless raw volume read through a memory map (x fastest, C order)."""

    def __init__(
        self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, offset: int = 0
    ):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = int(offset)

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        mm = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
        return np.array(mm[key], dtype=self.dtype.newbyteorder("="))


class NpyReader(VolumeReader):
    """A NumPy ``.npy`` file read through a memory map: only the slices asked for are
    read. A 2-D array is one slice; an array of objects (which would need unpickling)
    is refused.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.npy")
    >>> np.save(path, np.arange(24, dtype=np.uint16).reshape(2, 3, 4))
    >>> reader = NpyReader(path)
    >>> reader.shape, reader[1, 2].tolist()
    ((2, 3, 4), [20, 21, 22, 23])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise ValueError(
                f"cannot read {self.path} as a .npy volume ({err}); save it with numpy.save "
                "from an array of numbers"
            ) from None
        if not isinstance(mm, np.ndarray) or mm.dtype.kind not in "buif":
            raise ValueError(f"{self.path} holds {mm.dtype} values, not grey values")
        self._leading = mm.ndim == 2  # one slice: a leading z of 1
        self.shape = (1, *mm.shape) if self._leading else tuple(mm.shape)
        self.dtype = mm.dtype.newbyteorder("=")

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if self._leading:
            mm = mm[np.newaxis]
        return np.array(mm[key], dtype=self.dtype)


class MultiPageTiffReader(VolumeReader):
    """A multi-page TIFF (or one 3-D series) read page range by page range."""

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                shape, dtype = tuple(series.shape), np.dtype(series.dtype)
                n_pages = len(series.pages)
                pages_in_file = len(tif.pages)
                described = _described_slices(tif)
                axes = str(getattr(series, "axes", ""))
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as err:
            raise OSError(
                f"cannot read {self.path} as a TIFF (damaged or truncated?): {err}"
            ) from None
        if "S" in axes:  # samples per pixel: RGB(A) or other colour channels
            raise ValueError(
                f"{self.path} holds colour images (TIFF axes {axes}, shape {shape}); "
                "xctdask reads grey-value scans: convert it to one channel first"
            )
        if len(shape) == 2:
            shape = (1, *shape)
        if described is not None and described > pages_in_file:
            raise OSError(
                f"{self.path} is truncated or damaged: its metadata describes {described} "
                f"slices but only {pages_in_file} page(s) could be read"
            )
        if len(shape) != 3 or n_pages != shape[0]:
            raise ValueError(
                f"{self.path} holds a TIFF series of shape {shape} over {n_pages} pages; "
                "expected one 2-D page per z slice"
            )
        self.shape, self.dtype = shape, dtype

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        import tifffile

        zs, ys, xs = key
        pages = list(range(zs.start, zs.stop, zs.step))
        if not pages:
            return np.empty((0, *self.shape[1:]), self.dtype)[:, ys, xs]
        try:
            with tifffile.TiffFile(self.path) as tif:
                stack = tif.series[0].asarray(key=pages) if self.shape[0] > 1 else tif.asarray()
        except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
            raise OSError(
                f"cannot read pages {zs.start}..{zs.stop - 1} of {self.path}: {err}"
            ) from None
        return np.asarray(stack).reshape(len(pages), *self.shape[1:])[:, ys, xs]


class TiffStackReader(VolumeReader):
    """A folder of 2-D TIFF files, one per z slice, in natural sort order."""

    def __init__(self, path: str | os.PathLike, files: list[Path] | None = None):
        import tifffile

        self.path = Path(path)
        if files is None:
            files = [p for p in self.path.iterdir() if p.suffix.lower() in (".tif", ".tiff")]
        self.files = natural_sort(list(files))
        if not self.files:
            raise ValueError(f"no .tif/.tiff files in {self.path}")
        try:
            tif = tifffile.TiffFile(self.files[0])
        except (tifffile.TiffFileError, OSError, ValueError) as err:
            raise OSError(f"cannot read {self.files[0]} as a TIFF: {err}") from None
        with tif:
            page = tif.series[0]
            if len(page.shape) != 2:
                raise ValueError(
                    f"{self.files[0]} has shape {page.shape}; a TIFF stack folder needs one "
                    "2-D image per file"
                )
            self.shape = (len(self.files), *page.shape)
            self.dtype = np.dtype(page.dtype)
        self._check_headers()

    def _check_headers(self) -> None:
        """Every slice's shape and type from its header (≈ 0.3 ms a file, read by
        threads), so a cropped or converted slice among thousands is refused when the
        stack is opened, not when a task reaches it hours into a run."""
        from concurrent.futures import ThreadPoolExecutor

        import tifffile

        def header(f: Path) -> tuple[Path, Any, Any]:
            try:
                with tifffile.TiffFile(f) as tif:
                    page = tif.pages.first
                    return f, tuple(page.shape), np.dtype(page.dtype)
            except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
                raise OSError(f"cannot read {f} as a TIFF: {err}") from None

        with ThreadPoolExecutor(max_workers=min(16, len(self.files))) as pool:
            for f, shape, dtype in pool.map(header, self.files[1:]):
                if shape != self.shape[1:]:
                    raise ValueError(
                        f"{f} has shape {shape}; the stack's first slice "
                        f"({self.files[0].name}) has {self.shape[1:]}: a stack needs slices "
                        "of one shape"
                    )
                if dtype.newbyteorder("=") != self.dtype.newbyteorder("="):
                    raise ValueError(
                        f"{f} holds {dtype} voxels; the stack's first slice holds "
                        f"{self.dtype}: convert the slices to one type"
                    )

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        import tifffile

        zs, ys, xs = key
        files = self.files[zs]
        out = np.empty((len(files), *self.shape[1:]), self.dtype)[:, ys, xs]
        for i, f in enumerate(files):
            try:
                image = tifffile.imread(f)
            except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
                raise OSError(f"cannot read {f} as a TIFF: {err}") from None
            if image.shape != self.shape[1:]:
                raise ValueError(
                    f"{f} has shape {image.shape}; the stack's first slice has {self.shape[1:]}"
                )
            same = image.dtype.newbyteorder("=") == self.dtype.newbyteorder("=")
            if not same:  # never cast a slice silently (floats to ints)
                raise ValueError(
                    f"{f} holds {image.dtype} voxels; the stack's first slice holds "
                    f"{self.dtype}: convert the slices to one type"
                )
            out[i] = image[ys, xs]
        return out

    def token(self) -> tuple[Any, ...]:
        stats = [os.stat(f) for f in (self.files[0], self.files[-1])]
        return ("TiffStackReader", str(self.path), len(self.files), *(s.st_mtime_ns for s in stats))


class Hdf5Reader(VolumeReader):
    """One dataset of an HDF5 / NeXus file, opened read-only for each read."""

    def __init__(self, path: str | os.PathLike, dataset: str):
        import h5py

        self.path = Path(path)
        self.dataset = dataset
        with h5py.File(self.path, "r") as f:
            if dataset not in f:
                raise KeyError(f"{self.path} has no dataset {dataset!r}")
            ds = f[dataset]
            if not isinstance(ds, h5py.Dataset):
                raise ValueError(f"{dataset!r} in {self.path} is a group, not a dataset")
            self.shape, self.dtype = tuple(ds.shape), np.dtype(ds.dtype)
            self.chunks = ds.chunks
            self.attrs = {k: _plain(v) for k, v in ds.attrs.items()}

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.dataset][key])

    def token(self) -> tuple[Any, ...]:
        return (*super().token(), self.dataset)


def _described_slices(tif: Any) -> int | None:
    """Slices the file's ImageJ or shaped metadata promises, if it says."""
    meta = tif.imagej_metadata or {}
    if "images" in meta:
        return int(meta["images"])
    shaped = tif.shaped_metadata
    if shaped and "shape" in shaped[0] and len(shaped[0]["shape"]) == 3:
        return int(shaped[0]["shape"][0])
    return None


class TimeStepReader(VolumeReader):
    """One time step of a 4-D ``(t, z, y, x)`` reader, as a 3-D volume reader, so a
    task can read any region of that step straight from the store."""

    def __init__(self, reader: VolumeReader, t: int):
        if len(reader.shape) != 4 or not 0 <= int(t) < reader.shape[0]:
            raise ValueError(f"time step {t} of a reader of shape {reader.shape}")
        self.reader, self.t = reader, int(t)
        self.shape, self.dtype, self.path = tuple(reader.shape[1:]), reader.dtype, reader.path

    @property
    def source_location(self) -> str:
        return self.reader.source_location

    def token(self) -> tuple[Any, ...]:
        return (*self.reader.token(), "t", self.t)

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        return self.reader[(slice(self.t, self.t + 1), *key)][0]


class ZarrReader(VolumeReader):
    """Regions of a Zarr array (local or fsspec), checked where xctdask wrote it.

    Parameters
    ----------
    array : zarr.Array
    where : str
        The location shown in messages (path or URL).
    verify : bool
        The store was written to completion by :func:`xctdask.save_volume`, so every
        chunk must exist: a missing one is an error naming it instead of reading as
        the fill value.

    fixed : dict of int to int, optional
        Axes of the array held at one index and left out of the reader's shape: the
        singleton channel and time axes of an OME-Zarr ``(t, c, z, y, x)`` image.

    A chunk that cannot be decoded (a truncated or corrupt file) raises ``OSError``
    naming the store and the chunk key. Picklable: Dask ships it to the workers.
    """

    def __init__(
        self, array: Any, where: str, *, verify: bool = False, fixed: dict[int, int] | None = None
    ):
        self.array = array
        self.path = where
        self.fixed = {int(a): int(i) for a, i in (fixed or {}).items()}
        kept = [a for a in range(len(array.shape)) if a not in self.fixed]
        self.shape = tuple(int(array.shape[a]) for a in kept)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(array.chunks[a]) for a in kept)
        shards = getattr(array, "shards", None)
        self._full_grid = tuple(int(c) for c in (shards or array.chunks))
        self.grid = tuple(self._full_grid[a] for a in kept)
        self.verify = verify

    def _full(self, key: tuple[slice, ...]) -> tuple[slice, ...]:
        """``key`` over the reader's axes as slices over every axis of the array."""
        parts = iter(key)
        return tuple(
            slice(self.fixed[a], self.fixed[a] + 1) if a in self.fixed else next(parts)
            for a in range(len(self._full_grid))
        )

    @property
    def source_location(self) -> str:
        from xctdask.io.guard import location_of

        return location_of(self.array) or self.path

    def token(self) -> tuple[Any, ...]:
        from xctdask.io.locations import is_url

        stamp = None
        if not is_url(self.path):
            for name in ("zarr.json", ".zarray", ".zattrs"):
                meta = Path(self.path) / name
                if meta.exists():
                    stamp = os.stat(meta).st_mtime_ns
                    break
        fixed = tuple(sorted(self.fixed.items()))
        return ("ZarrReader", self.source_location, self.shape, str(self.dtype), stamp, fixed)

    def grid_keys(self, key: tuple[slice, ...]) -> list[tuple[tuple[int, ...], str]]:
        """Grid coordinates (over every axis of the array) and store keys of the chunks
        (shards) a region touches."""
        import itertools

        ranges = [
            range(s.start // g, -(-s.stop // g)) if s.stop > s.start else range(0)
            for s, g in zip(self._full(key), self._full_grid, strict=True)
        ]
        prefix = self.array.store_path.path
        out = []
        for coords in itertools.product(*ranges):
            name = self.array.metadata.encode_chunk_key(coords)
            out.append((coords, f"{prefix}/{name}" if prefix else name))
        return out

    def missing(self, keys: list[str]) -> list[str]:
        """The store keys among ``keys`` that do not exist."""
        import asyncio

        from zarr.core.sync import sync

        store = self.array.store_path.store

        async def present() -> list[bool]:
            return list(await asyncio.gather(*(store.exists(k) for k in keys)))

        return [k for k, ok in zip(keys, sync(present()), strict=True) if not ok]

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        if self.verify:
            lost = self.missing([k for _, k in self.grid_keys(key)])
            if lost:
                raise OSError(
                    f"chunk {lost[0]!r} of {self.path} is missing"
                    + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else "")
                    + ": the store was written completely, so it has been damaged since "
                    "(run `xctdask info --check` on it)"
                )
        full = tuple(self.fixed[a] if a in self.fixed else s for a, s in enumerate(self._full(key)))
        try:
            return np.asarray(self.array[full])
        except Exception as err:
            raise OSError(self._decode_error(key, err)) from None

    def _decode_error(self, key: tuple[slice, ...], err: Exception) -> str:
        for coords, name in self.grid_keys(key):
            region = tuple(
                slice(c * g, min((c + 1) * g, n))
                for c, g, n in zip(coords, self._full_grid, self.array.shape, strict=True)
            )
            try:
                self.array[region]
            except Exception as inner:
                return f"cannot decode chunk {name!r} of {self.path}: {inner}"
        return f"cannot read {self.path} at {key}: {err}"


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
