"""The reconstruction's field of view: the cylinder outside which voxels are constant.

Parallel-beam reconstructions (``iradon(..., circle=True)``, tomopy with a circular
mask, most beamline pipelines) set every voxel outside the field-of-view circle to one
value, usually 0. Those voxels are not sample, yet they can be a third of the volume:
left in, they dominate the intensity histogram and drag a cluster onto a value that
means nothing. :func:`find_field_of_view` locates the circle; :func:`cylinder_mask`
gives the matching lazy boolean mask (True inside), computed per chunk from the circle
so nothing volume-sized is stored.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import dask.array as da
import numpy as np

from xctdask.backend import is_dask, to_host, unwrap

__all__ = ["FieldOfView", "cylinder_mask", "find_field_of_view"]


@dataclass(frozen=True)
class FieldOfView:
    """A circle in the (y, x) plane, the same for every z slice.

    Attributes
    ----------
    center_y, center_x : float
        Centre in voxel coordinates.
    radius : float
        Voxels at distance ≤ ``radius`` from the centre are inside; ``inf`` when the
        data have no field of view (every voxel is inside, nothing is masked).
    outside_value : float or None
        The constant value found outside (None when there is none).
    """

    center_y: float
    center_x: float
    radius: float
    outside_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def everything(self) -> bool:
        """True when the circle holds every voxel: nothing to mask."""
        return not np.isfinite(self.radius)

    def inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Boolean grid, True inside the circle, for coordinate vectors ``y`` and ``x``."""
        dy = (np.asarray(y, np.float64) - self.center_y)[:, None]
        dx = (np.asarray(x, np.float64) - self.center_x)[None, :]
        # a hair of tolerance: the radius is the square root of a voxel's own distance²
        return dy * dy + dx * dx <= self.radius * self.radius * (1 + 1e-12)


def find_field_of_view(vol: Any, *, z: int | None = None) -> FieldOfView:
    """Find the field-of-view circle of a reconstruction from one slice (**computes** it).

    The four corner voxels of slice ``z`` (default: the middle one) give the outside
    value; the circle is the smallest one about the centre of the voxels that differ
    from it that holds all of them. Only the chunks holding that slice are read.

    NaN corners mean a NaN exterior: the circle is the one holding the finite voxels
    (``outside_value`` NaN; NaN voxels are left out of every pass anyway). If the
    corners differ, the data have no constant exterior (a cropped
    reconstruction, a micro-CT stack, a set of 2-D images): the field of view is the
    whole slice, so nothing is masked, and a ``UserWarning`` says so. A constant slice
    has no field of view to find either (the histogram pass then reports a constant
    volume).

    Examples
    --------
    >>> yy, xx = np.mgrid[:9, :9]
    >>> slab = np.where((yy - 4) ** 2 + (xx - 4) ** 2 <= 9, 1.0, 0.0)[None]
    >>> fov = find_field_of_view(slab)
    >>> fov.center_y, fov.center_x, fov.radius, fov.outside_value
    (4.0, 4.0, 3.0, 0.0)
    """
    data = unwrap(vol)
    if data.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x); got shape {tuple(data.shape)}")
    z = data.shape[0] // 2 if z is None else z
    plane = data[z]
    plane = plane.compute() if is_dask(plane) else plane
    plane = to_host(plane)
    ny, nx = plane.shape
    corners = plane[[0, 0, -1, -1], [0, -1, 0, -1]]
    whole = FieldOfView((ny - 1) / 2, (nx - 1) / 2, float("inf"), None)
    if np.isnan(corners).all():  # a NaN exterior: the circle holds the finite voxels
        return _circle(np.isfinite(plane), whole, float("nan"))
    if not (np.all(corners == corners[0]) and np.isfinite(corners[0])):
        warnings.warn(
            "mask='cylinder': the corners of slice "
            f"{z} differ ({corners.tolist()}), so there is no constant region outside a "
            "field of view; nothing is masked",
            UserWarning,
            stacklevel=2,
        )
        return whole
    return _circle(plane != corners[0], whole, float(corners[0]))


def _circle(sample: np.ndarray, whole: FieldOfView, outside: float) -> FieldOfView:
    """The smallest circle about the centre of the ``sample`` voxels that holds them
    all (``whole`` when there are none: a constant slice, nothing to find)."""
    ys, xs = np.nonzero(sample)
    if ys.size == 0:
        return whole
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    radius = float(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max()))
    return FieldOfView(float(cy), float(cx), radius, outside)


def _mask_block(fov: FieldOfView, block_info=None) -> np.ndarray:
    info = block_info[None]
    (z0, z1), (y0, y1), (x0, x1) = info["array-location"]
    inside = fov.inside(np.arange(y0, y1), np.arange(x0, x1))
    return np.broadcast_to(inside, (z1 - z0, *inside.shape))


def cylinder_mask(shape: tuple[int, int, int], chunks: Any, fov: FieldOfView) -> da.Array:
    """A lazy boolean mask, True inside ``fov``, with the given shape and chunks.

    Examples
    --------
    >>> m = cylinder_mask((2, 5, 5), (1, 5, 5), FieldOfView(2, 2, 1.5))
    >>> m.sum().compute().item(), m[0].compute()[2].tolist()
    (18, [False, True, True, True, False])
    """
    return da.map_blocks(
        _mask_block,
        fov,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=bool,
        meta=np.empty((0, 0, 0), bool),
    )
