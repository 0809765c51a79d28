"""Which array library an array belongs to, and the checks every volume passes.

This is the one place that decides whether data are NumPy, CuPy, Dask (of either)
or an xarray wrapper around them. Everything else asks here instead of testing types
itself, so that mixing NumPy and CuPy fails loudly instead of copying silently.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "UNLABELLED",
    "array_module",
    "as_dask",
    "check_mean_std",
    "check_same_shape",
    "from_torch",
    "is_cupy",
    "is_dask",
    "is_number",
    "meta_like",
    "native_order",
    "to_host",
    "to_torch",
    "unwrap",
    "validate_volume",
]


#: The label of unlabelled voxels everywhere in xctdask: sparse annotations, voxels
#: outside the field of view or not finite, teacher-masked voxels; ignored by losses
#: and metrics.
UNLABELLED = 255


def unwrap(data: Any) -> Any:
    """Return the array inside an ``xarray.DataArray``; other arrays pass through.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> unwrap(xr.DataArray(np.zeros(3))).shape
    (3,)
    """
    kind = type(data)
    if kind.__name__ == "DataArray" and kind.__module__.startswith("xarray"):
        return data.data
    return data


def _is_dask_array(data: Any) -> bool:
    return type(data).__module__.startswith("dask.array") and hasattr(data, "_meta")


def is_dask(data: Any) -> bool:
    """True for a Dask array or a Dask-backed DataArray."""
    return _is_dask_array(unwrap(data))


def _chunk_type(data: Any) -> type:
    data = unwrap(data)
    if _is_dask_array(data):
        return type(data._meta)
    return type(data)


def is_cupy(data: Any) -> bool:
    """True when the data (or the chunks of a Dask array) live on a GPU as CuPy arrays.

    CuPy is never imported here: the test is on the type's module name.
    """
    return _chunk_type(data).__module__.split(".")[0] == "cupy"


def array_module(*arrays: Any) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that the chunks of ``arrays`` belong to.

    Raises
    ------
    TypeError
        If some arrays are CuPy and others NumPy: we never copy between host and
        device behind the caller's back.

    Examples
    --------
    >>> import numpy as np
    >>> array_module(np.zeros(2)).__name__
    'numpy'
    """
    kinds = {is_cupy(a) for a in arrays if a is not None}
    if len(kinds) > 1:
        raise TypeError(
            "cannot mix NumPy and CuPy arrays; move them to the same device first "
            "(e.g. cupy.asarray or .get())"
        )
    if kinds == {True}:
        import cupy  # imported only when CuPy data are actually present

        return cupy
    return np


def to_host(data: Any) -> np.ndarray:
    """A NumPy array with the data of a NumPy or CuPy array (a copy off the GPU).

    This is the only place chunks leave a GPU; call it where host memory is needed
    (writing to a store, plotting), never inside GPU pipelines.

    Examples
    --------
    >>> to_host(np.arange(3)).tolist()
    [0, 1, 2]
    """
    if type(data).__module__.split(".")[0] == "cupy":
        return data.get()
    return np.asarray(data)


def meta_like(data: Any, dtype: Any, ndim: int | None = None) -> Any:
    """An empty array of ``dtype`` from the same library as ``data``'s chunks, to pass
    as ``meta=`` so Dask never runs a block function to guess its output type.

    Examples
    --------
    >>> meta_like(np.zeros((2, 2)), np.uint8).shape
    (0, 0)
    """
    xp = array_module(data)
    ndim = unwrap(data).ndim if ndim is None else ndim
    return xp.empty((0,) * ndim, dtype=dtype)


def native_order(chunk: Any) -> Any:
    """``chunk`` in the machine's byte order: a big-endian array (``>f4``, ``>u2``: some
    TIFF, HDF5, raw and Zarr data) is converted, PyTorch takes no other; others are
    returned as they are.

    Examples
    --------
    >>> native_order(np.arange(3, dtype=">u2")).dtype.isnative
    True
    """
    dtype = getattr(chunk, "dtype", None)
    if dtype is None or dtype.isnative:
        return chunk
    return chunk.astype(dtype.newbyteorder("="))


def to_torch(chunk: Any, device: Any = None) -> Any:
    """A PyTorch tensor sharing a NumPy or CuPy chunk's memory (CuPy through DLPack,
    so a GPU chunk is never copied to the host), moved to ``device`` if given. A
    big-endian chunk is converted to the machine's byte order first (a copy)."""
    import torch

    if type(chunk).__module__.split(".")[0] == "cupy":
        tensor = torch.from_dlpack(chunk)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(native_order(chunk)))
    return tensor if device is None else tensor.to(device)


def from_torch(tensor: Any, like: Any = None) -> Any:
    """A tensor back as the array library of ``like`` (CuPy through DLPack when ``like``
    is CuPy; else NumPy on the host)."""
    if like is not None and type(like).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.from_dlpack(tensor.contiguous())
    return tensor.detach().cpu().numpy()


def as_dask(data: Any, chunks: Any = "auto") -> Any:
    """Return ``data`` as a Dask array without copying Dask input.

    NumPy and CuPy arrays are wrapped with ``chunks`` (default ``"auto"``); a
    DataArray is unwrapped first.
    """
    import dask.array as da

    data = unwrap(data)
    if _is_dask_array(data):
        return data
    return da.from_array(data, chunks=chunks, asarray=False)


def is_number(value: Any) -> bool:
    """Whether ``value`` is one finite real number (a bool is not a number here).

    Examples
    --------
    >>> is_number(0.5), is_number(float("nan")), is_number(True), is_number("1")
    (True, False, False, False)
    """
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and bool(np.isfinite(value))
    )


def check_mean_std(pair: Any, name: str = "normalize") -> tuple[float, float]:
    """A global ``(mean, std)`` normalisation as two floats: a finite mean and a positive
    finite std (a zero std turns every voxel into inf or NaN).

    Examples
    --------
    >>> check_mean_std((1400, 300))
    (1400.0, 300.0)
    >>> check_mean_std((0, 0))
    Traceback (most recent call last):
    ...
    ValueError: normalize must be (mean, std) with a finite mean and a positive std, got (0, 0)
    """
    try:
        values = np.asarray(pair, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size != 2 or not np.isfinite(values).all() or not values[1] > 0:
        raise ValueError(
            f"{name} must be (mean, std) with a finite mean and a positive std, got {pair!r}"
        )
    return float(values[0]), float(values[1])


def validate_volume(data: Any, *, name: str = "volume", ndim: int | tuple[int, ...] = 3) -> None:
    """Check that ``data`` is a numeric array of the expected dimensionality.

    The check looks at shape and dtype only; it never reads voxels, so it is free on
    lazy data.

    Raises
    ------
    TypeError
        For data that are not an array, or a non-numeric dtype (strings, objects,
        complex numbers).
    ValueError
        For the wrong number of dimensions or an empty array.

    Examples
    --------
    >>> import numpy as np
    >>> validate_volume(np.zeros((2, 3, 4)))
    >>> validate_volume(np.zeros((3, 4)))
    Traceback (most recent call last):
    ...
    ValueError: volume must be 3-D (z, y, x); got 2-D with shape (3, 4)
    """
    data = unwrap(data)
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        hint = ""
        if isinstance(data, (str, os.PathLike)):
            hint = f": open the file first, e.g. xd.open_volume({os.fspath(data)!r})"
        raise TypeError(f"{name} must be an array, got {type(data).__name__}{hint}")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must have a real numeric dtype (bool, integer or float); got {dtype}"
        )
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if data.ndim not in allowed:
        want = " or ".join(f"{n}-D" for n in allowed)
        layout = " (z, y, x)" if allowed == (3,) else ""
        raise ValueError(
            f"{name} must be {want}{layout}; got {data.ndim}-D with shape {tuple(data.shape)}"
        )
    if 0 in data.shape:
        raise ValueError(f"{name} is empty: shape {tuple(data.shape)}")


def check_same_shape(a: Any, b: Any, names: tuple[str, str] = ("prediction", "truth")) -> None:
    """Raise ``ValueError`` naming both arrays when their shapes differ."""
    sa, sb = tuple(unwrap(a).shape), tuple(unwrap(b).shape)
    if sa != sb:
        raise ValueError(f"{names[0]} shape {sa} does not match {names[1]} shape {sb}")
