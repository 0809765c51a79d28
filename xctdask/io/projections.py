"""Projection data (sinograms before reconstruction) in the Data Exchange HDF5 layout."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from xctdask.io.readers import Hdf5Reader

__all__ = ["open_projections"]


def _lazy(reader: Hdf5Reader) -> da.Array:
    return da.from_array(
        reader, chunks=reader.shape, lock=False, meta=np.empty((0,) * reader.ndim, reader.dtype)
    )


def open_projections(
    path: str | os.PathLike,
    *,
    data: str = "exchange/data",
    flats: str | None = "exchange/data_white",
    darks: str | None = "exchange/data_dark",
    theta: str = "exchange/theta",
) -> xr.Dataset:
    """Open projections, flat and dark fields and angles from a Data Exchange file.

    Returns a Dataset with ``data`` (angle, row, col), ``flats`` and ``darks``
    (frame, row, col), and the angles as the ``angle`` coordinate in degrees (radians in
    the file are converted when the dataset's ``units`` attribute says so). Arrays are
    Dask-backed; nothing is read but metadata.

    Examples
    --------
    >>> ds = open_projections("../shared/data/tooth/tooth.h5")  # doctest: +SKIP
    >>> ds.data.shape                                          # doctest: +SKIP
    (181, 2, 640)
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    projections = Hdf5Reader(path, data)
    if projections.ndim != 3:
        raise ValueError(f"{data} in {path} must be 3-D (angle, row, col); got {projections.shape}")
    with h5py.File(path, "r") as f:
        if theta not in f:
            raise KeyError(f"{path} has no angles dataset {theta!r}")
        angles = np.asarray(f[theta][...], dtype=np.float64)
        units = f[theta].attrs.get("units", b"degrees")
    units = units.decode() if isinstance(units, bytes) else str(units)
    if units.lower().startswith("rad"):
        angles = np.degrees(angles)
    if angles.shape != (projections.shape[0],):
        raise ValueError(
            f"{theta} has {angles.size} angles but {data} has {projections.shape[0]} projections"
        )
    variables = {"data": (("angle", "row", "col"), _lazy(projections))}
    for name, key in (("flats", flats), ("darks", darks)):
        if key is not None:
            field = Hdf5Reader(path, key)
            if field.ndim != 3 or tuple(field.shape[1:]) != tuple(projections.shape[1:]):
                raise ValueError(
                    f"{key} in {path} holds {name} of shape {tuple(field.shape)}; frames of "
                    f"the projections' detector, (frame, {projections.shape[1]}, "
                    f"{projections.shape[2]}), were expected"
                )
            variables[name] = (("frame_" + name, "row", "col"), _lazy(field))
    return xr.Dataset(variables, coords={"angle": angles}, attrs={"source": str(path)})
