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
    "RawReader",
    "TiffStackReader",
    "VolumeReader",
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


class MultiPageTiffReader(VolumeReader):
    """A multi-page TIFF (or one 3-D series) read page range by page range."""

    def __init__(self, path: str | os.PathLike):
        import tifffile

        self.path = Path(path)
        with tifffile.TiffFile(self.path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            n_pages = len(series.pages)
        if len(shape) == 2:
            shape = (1, *shape)
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
        with tifffile.TiffFile(self.path) as tif:
            stack = tif.series[0].asarray(key=pages) if self.shape[0] > 1 else tif.asarray()
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
        with tifffile.TiffFile(self.files[0]) as tif:
            page = tif.series[0]
            if len(page.shape) != 2:
                raise ValueError(
                    f"{self.files[0]} has shape {page.shape}; a TIFF stack folder needs one "
                    "2-D image per file"
                )
            self.shape = (len(self.files), *page.shape)
            self.dtype = np.dtype(page.dtype)

    def _read(self, key: tuple[slice, ...]) -> np.ndarray:
        import tifffile

        zs, ys, xs = key
        files = self.files[zs]
        out = np.empty((len(files), *self.shape[1:]), self.dtype)[:, ys, xs]
        for i, f in enumerate(files):
            image = tifffile.imread(f)
            if image.shape != self.shape[1:]:
                raise ValueError(
                    f"{f} has shape {image.shape}; the stack's first slice has {self.shape[1:]}"
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


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
