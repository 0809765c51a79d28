"""The raw + ``.raw.info`` volume format (PyHST, as used by tomo2seg).

A volume ``name.raw`` holds voxels with x varying fastest and no header; the text file
``name.raw.info`` beside it says ``NUM_X``, ``NUM_Y``, ``NUM_Z`` and optionally the data
type, byte order and voxel size::

    ! PyHST_SLAVE VOLUME INFO FILE
    NUM_X = 200
    NUM_Y = 200
    NUM_Z = 100
    DATA_TYPE = uint8
    BYTEORDER = LOWBYTEFIRST
    VOXEL_SIZE = 0.65
    UNIT = micrometer

PyHST itself writes float32 volumes and leaves the type out; when ``DATA_TYPE`` is
missing the type is taken from the file size (1 byte: uint8, 2: uint16, 4: float32,
8: float64).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RawInfo", "info_path_for", "read_raw_info", "write_raw"]

_SIZE_TO_DTYPE = {1: "uint8", 2: "uint16", 4: "float32", 8: "float64"}


@dataclass(frozen=True)
class RawInfo:
    """What a ``.raw.info`` file says about its volume."""

    shape: tuple[int, int, int]  # (z, y, x)
    dtype: np.dtype
    voxel_size: float | None = None
    unit: str | None = None


def info_path_for(raw_path: str | os.PathLike) -> Path:
    """The ``.raw.info`` path that belongs to ``raw_path``."""
    return Path(str(raw_path) + ".info")


def _parse(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("!") or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        entries[key.strip().upper()] = value.strip()
    return entries


_BYTE_ORDERS = {"LOWBYTEFIRST": "<", "HIGHBYTEFIRST": ">"}


def _count(entries: dict[str, str], key: str, info_path: Path) -> int:
    """The positive whole number of entry ``key`` (NUM_X, NUM_Y or NUM_Z)."""
    if key not in entries:
        raise ValueError(f"{info_path} has no {key} entry")
    try:
        value = int(entries[key])
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{info_path} gives {key} = {entries[key]}; it must be a whole number ≥ 1")
    return value


def read_raw_info(raw_path: str | os.PathLike) -> RawInfo:
    """Parse the ``.raw.info`` file of ``raw_path`` and check it against the file size.

    Raises
    ------
    FileNotFoundError
        If the raw file or its info file is missing.
    ValueError
        If the info file lacks a dimension, or the file size does not fit the shape.
    """
    raw_path = Path(raw_path)
    info_path = info_path_for(raw_path)
    if not raw_path.is_file():
        raise FileNotFoundError(f"raw volume not found: {raw_path}")
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{raw_path} has no {info_path.name} beside it; the raw format needs one "
            "with NUM_X, NUM_Y, NUM_Z (and DATA_TYPE unless the size makes it clear)"
        )
    entries = _parse(info_path.read_text())
    nx, ny, nz = (_count(entries, key, info_path) for key in ("NUM_X", "NUM_Y", "NUM_Z"))
    n_voxels = nx * ny * nz
    size = raw_path.stat().st_size
    if "DATA_TYPE" in entries or "DTYPE" in entries:
        name = entries.get("DATA_TYPE", entries.get("DTYPE"))
        try:
            dtype = np.dtype(name)
        except TypeError:
            raise ValueError(
                f"{info_path} gives DATA_TYPE = {name}, which is not a data type "
                "(e.g. uint8, uint16, float32)"
            ) from None
        if dtype.kind not in "uif":
            raise ValueError(f"{info_path} gives DATA_TYPE = {name}: not a number type")
    else:
        per_voxel, rest = divmod(size, n_voxels)
        if rest or per_voxel not in _SIZE_TO_DTYPE:
            raise ValueError(
                f"{info_path} gives no DATA_TYPE and {size} bytes do not divide into "
                f"{n_voxels} voxels of a known size"
            )
        dtype = np.dtype(_SIZE_TO_DTYPE[per_voxel])
    order = entries.get("BYTEORDER", "LOWBYTEFIRST").upper()
    if order not in _BYTE_ORDERS:
        raise ValueError(
            f"{info_path} gives BYTEORDER = {order}; it must be LOWBYTEFIRST (little "
            "endian) or HIGHBYTEFIRST (big endian)"
        )
    dtype = dtype.newbyteorder(_BYTE_ORDERS[order])
    if size != n_voxels * dtype.itemsize:
        raise ValueError(
            f"{raw_path} has {size} bytes but {info_path.name} describes "
            f"{nz}×{ny}×{nx} voxels of {dtype.name} ({n_voxels * dtype.itemsize} bytes)"
        )
    voxel = entries.get("VOXEL_SIZE", entries.get("VOXELSIZE"))
    voxel_size = None
    if voxel is not None:
        try:
            voxel_size = float(voxel)
        except ValueError:
            voxel_size = float("nan")
        if not np.isfinite(voxel_size) or voxel_size <= 0:
            raise ValueError(
                f"{info_path} gives VOXEL_SIZE = {voxel}; it must be a positive number "
                "(the unit goes in its own UNIT entry)"
            )
    return RawInfo(
        shape=(nz, ny, nx),
        dtype=dtype,
        voxel_size=voxel_size,
        unit=entries.get("UNIT"),
    )


def write_raw(
    volume: np.ndarray,
    raw_path: str | os.PathLike,
    *,
    voxel_size: float | None = None,
    unit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 3-D NumPy volume as ``raw_path`` plus its ``.raw.info``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "v.raw")
    >>> _ = write_raw(np.zeros((2, 3, 4), np.uint8), p)
    >>> read_raw_info(p).shape
    (2, 3, 4)
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a raw volume must be 3-D (z, y, x); got shape {volume.shape}")
    raw_path = Path(raw_path)
    if not overwrite and (raw_path.exists() or info_path_for(raw_path).exists()):
        raise FileExistsError(f"{raw_path} exists; pass overwrite=True to replace it")
    nz, ny, nx = volume.shape
    little = volume.astype(volume.dtype.newbyteorder("<"), copy=False)
    little.tofile(raw_path)
    lines = [
        "! PyHST_SLAVE VOLUME INFO FILE",
        f"NUM_X = {nx}",
        f"NUM_Y = {ny}",
        f"NUM_Z = {nz}",
        f"DATA_TYPE = {volume.dtype.name}",
        "BYTEORDER = LOWBYTEFIRST",
    ]
    if voxel_size is not None:
        lines.append(f"VOXEL_SIZE = {voxel_size}")
    if unit is not None:
        lines.append(f"UNIT = {unit}")
    info_path_for(raw_path).write_text("\n".join(lines) + "\n")
    return raw_path
