"""Regions of lazy volumes, read in one task.

Training reads many small windows of a volume larger than memory. Asking Dask for each
window costs a graph of several tasks per window, and a lazy target (pseudo labels)
recomputes whole chunks for every window. Here a region (a box) of each volume is read
**once, in one task**, in the cheapest way the volume allows:

* :class:`InMemory`: a NumPy/CuPy array (a view, no copy);
* :class:`FromStore`: a volume that :func:`xctdask.open_volume` opened reads the box
  straight from its store (only the storage chunks the box touches);
* :class:`Pointwise`: a volume that is a voxel-wise function of another one (the
  pseudo labels of the scan) is computed from that volume's region, which the same task
  has already read;
* :class:`Local`: a volume that is a function of a neighbourhood of another one (a
  local mean) is computed from that volume's region grown by the neighbourhood's
  halo, then cropped;
* :class:`FromGraph`: any other Dask array: the array's region through its graph (a few
  tasks on the cluster, or the synchronous scheduler where there is none).

:func:`register_pointwise` is how a lazy result declares that it is voxel-wise, and
:func:`register_local` that it depends on a neighbourhood:
:meth:`xctdask.PseudoLabeler.predict` registers its relabel rule (and its local mean).

Examples
--------
>>> import numpy as np, dask.array as da
>>> image = da.from_array(np.arange(64.0).reshape(4, 4, 4), chunks=2)
>>> double = register_pointwise(image * 2, image, lambda values, region: values * 2)
>>> sources = {"image": source_of(image), "double": source_of(double, {"image": image})}
>>> describe(sources)
{'image': 'through its Dask graph', 'double': 'computed from the read region'}
>>> out = read_region(bind(sources, ((1, 3), (0, 2), (0, 1))), ((1, 3), (0, 2), (0, 1)))
>>> out["double"][:, :, 0].tolist()
[[32.0, 40.0], [64.0, 72.0]]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FromGraph",
    "FromStore",
    "InMemory",
    "Local",
    "Pointwise",
    "Renormalize",
    "bind",
    "cut_patches",
    "describe",
    "read_region",
    "register_local",
    "register_pointwise",
    "source_of",
]

Region = tuple[tuple[int, int], ...]

# result array name -> (source array, function of (source region, region))
_POINTWISE: OrderedDict[str, tuple[Any, Callable[[Any, Region], Any]]] = OrderedDict()
_REMEMBERED = 32


def register_pointwise(result: Any, source: Any, function: Callable[[Any, Region], Any]) -> Any:
    """Declare that ``result``'s values on any region are ``function(source[region], region)``.

    ``function`` must be picklable (it runs on the workers) and receives the region as
    ``((z0, z1), (y0, y1), (x0, x1))`` (for position-dependent rules such as a field of
    view). Returns ``result`` unchanged. Only the most recent registrations are kept.
    """
    _POINTWISE[result.name] = (source, function)
    _POINTWISE.move_to_end(result.name)
    while len(_POINTWISE) > _REMEMBERED:
        _POINTWISE.popitem(last=False)
    return result


# result array name -> (source array, function of (grown source region, grown region), halo)
_LOCAL: OrderedDict[str, tuple[Any, Callable[[Any, Region], Any], tuple[int, ...]]] = OrderedDict()


def register_local(
    result: Any, source: Any, function: Callable[[Any, Region], Any], halo: tuple[int, ...]
) -> Any:
    """Declare that ``result`` on any region is ``function`` of ``source`` on that region
    grown by ``halo`` voxels per axis (clipped to the volume), cropped back.

    ``function(values, grown_region)`` must treat the volume's own borders as
    ``result`` does (e.g. reflect, as ``map_overlap(boundary="reflect")``) and be
    picklable. Returns ``result`` unchanged. Only the most recent registrations are kept.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> image = da.from_array(np.arange(8.0).reshape(1, 1, 8), chunks=4)
    >>> def mean3(v, region):  # 3-voxel mean along x, edges reflected
    ...     p = np.pad(v, ((0, 0), (0, 0), (1, 1)), mode="symmetric")
    ...     return (p[..., :-2] + p[..., 1:-1] + p[..., 2:]) / 3
    >>> smooth = register_local(
    ...     image.map_overlap(lambda b: mean3(b, None), depth=(0, 0, 1), boundary="reflect"),
    ...     image, mean3, (0, 0, 1))
    >>> region = ((0, 1), (0, 1), (2, 5))
    >>> out = read_region(bind({"s": source_of(smooth)}, region), region)["s"]
    >>> out.ravel().tolist() == smooth[0, 0, 2:5].compute().tolist()
    True
    """
    _LOCAL[result.name] = (source, function, tuple(int(h) for h in halo))
    _LOCAL.move_to_end(result.name)
    while len(_LOCAL) > _REMEMBERED:
        _LOCAL.popitem(last=False)
    return result


@dataclass(frozen=True)
class Renormalize:
    """``(values - mean) / std * new_std + new_mean``, voxel by voxel (picklable)."""

    mean: float
    std: float
    new_mean: float
    new_std: float

    def __call__(self, values: Any, region: Region) -> Any:
        return (values - self.mean) / self.std * self.new_std + self.new_mean


@dataclass(frozen=True)
class InMemory:
    """A NumPy or CuPy array: the region is a view."""

    array: Any

    def __repr__(self) -> str:
        return f"InMemory(shape={tuple(self.array.shape)})"


@dataclass(frozen=True)
class FromStore:
    """A store-backed volume (see :func:`xctdask.inference.predict.store_reader`)."""

    reader: Any


@dataclass(frozen=True)
class Pointwise:
    """A voxel-wise function of the role ``input`` (a name: read once in the same task)
    or of another source (read for the region first), computed from its region."""

    input: Any
    function: Callable[[Any, Region], Any]


@dataclass(frozen=True)
class Local:
    """A function of a neighbourhood of another source: its region grown by ``halo``
    (clipped to ``shape``) is read, ``function`` applied, and the result cropped."""

    input: Any
    function: Callable[[Any, Region], Any]
    halo: tuple[int, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FromGraph:
    """Any Dask array; :func:`bind` culls its graph to a region."""

    array: Any

    def __repr__(self) -> str:
        return f"FromGraph(name={self.array.name!r})"


@dataclass(frozen=True)
class _LocalGraph:
    """A Dask array's region, computed by the synchronous scheduler where it is read."""

    part: Any


def source_of(array: Any, others: dict[str, Any] | None = None) -> Any:
    """The cheapest way to read regions of ``array`` (NumPy, CuPy or Dask).

    ``others`` maps role names to arrays already read in the same task: a registered
    voxel-wise function of one of them becomes :class:`Pointwise`.
    """
    from xctdask.backend import is_dask, unwrap
    from xctdask.inference.predict import store_reader

    array = unwrap(array)
    if not is_dask(array):
        return InMemory(array)
    known = _POINTWISE.get(array.name)
    if known is not None:
        source, function = known
        for role, other in (others or {}).items():
            other = unwrap(other)
            if is_dask(other) and other.name == source.name:
                return Pointwise(role, function)
        inner = source_of(source)
        if not isinstance(inner, FromGraph):
            return Pointwise(inner, function)
    local = _LOCAL.get(array.name)
    if local is not None:
        source, function, halo = local
        inner = source_of(source)
        if not isinstance(inner, FromGraph):
            return Local(inner, function, halo, tuple(int(n) for n in array.shape))
    reader = store_reader(array)
    if reader is not None:
        return FromStore(reader)
    return FromGraph(array)


def bind(sources: dict[str, Any], region: Region, client: Any = None) -> dict[str, Any]:
    """The sources ready for a task that reads ``region``.

    A graph source becomes its region: with a ``client``, a future of the region (this
    **starts computing** its few tasks on the cluster, which also holds persisted data)
    that the task receives as an array; without one, the region's Dask array, which
    :func:`read_region` computes in the task.
    """
    bound = {}
    for role, source in sources.items():
        if isinstance(source, FromGraph):
            part = source.array[tuple(slice(lo, hi) for lo, hi in region)]
            bound[role] = client.compute(part) if client is not None else _LocalGraph(part)
        else:
            bound[role] = source
    return bound


def _read(source: Any, region: Region, done: dict[str, Any]) -> Any:
    """``region`` of a bound source, inside the task that needs it. A
    :class:`_LocalGraph` (a Dask array with no cheaper reader) is **computed** here,
    with the synchronous scheduler, for that region only."""
    box = tuple(slice(lo, hi) for lo, hi in region)
    if isinstance(source, InMemory):
        return source.array[box]
    if isinstance(source, FromStore):
        return source.reader[box]
    if isinstance(source, Pointwise):
        if isinstance(source.input, str):
            return source.function(done[source.input], region)
        return source.function(_read(source.input, region, done), region)
    if isinstance(source, Local):
        grown = tuple(
            (max(0, lo - h), min(n, hi + h))
            for (lo, hi), h, n in zip(region, source.halo, source.shape, strict=True)
        )
        values = source.function(_read(source.input, grown, done), grown)
        crop = tuple(
            slice(lo - g0, hi - g0) for (lo, hi), (g0, _) in zip(region, grown, strict=True)
        )
        return values[crop]
    if isinstance(source, _LocalGraph):
        return source.part.compute(scheduler="sync")
    if hasattr(source, "shape") and hasattr(source, "dtype"):  # a region read already
        return source
    raise TypeError(f"cannot read a region of {source!r}; bind() graph sources first")


def _waits(source: Any) -> bool:
    return isinstance(source, Pointwise) and isinstance(source.input, str)


def read_region(sources: dict[str, Any], region: Region) -> dict[str, Any]:
    """Every role's values on ``region`` (the sources :func:`bind` returned); a
    :class:`Pointwise` role is computed from its input's region, read once. **Computes**
    (reads) the region; a bound graph source runs on the synchronous scheduler."""
    done: dict[str, Any] = {}
    waiting = dict(sources)
    while waiting:
        ready = [r for r, s in waiting.items() if not _waits(s) or s.input in done]
        if not ready:
            raise ValueError(f"voxel-wise sources wait on roles that are not read: {waiting}")
        for role in ready:
            done[role] = _read(waiting.pop(role), region, done)
    return done


def cut_patches(
    sources: dict[str, Any], region: Region, windows: dict[str, list[tuple[slice, ...]]]
) -> dict[str, np.ndarray]:
    """Read ``region`` of every role once and cut its windows (relative to the region's
    corner) into one stacked host array per role: the task behind a batch of patches."""
    from xctdask.backend import array_module, to_host

    values = read_region(sources, region)
    out = {}
    for role, boxes in windows.items():
        xp = array_module(values[role])
        out[role] = to_host(xp.stack([values[role][box] for box in boxes]))
    return out


def describe(sources: dict[str, Any]) -> dict[str, str]:
    """How each role is read, in words (for ``PatchSampler.__repr__`` and logs)."""
    words = {
        InMemory: "in memory",
        FromStore: "from the store",
        Pointwise: "computed from the read region",
        Local: "computed from a grown region",
        FromGraph: "through its Dask graph",
    }
    return {role: words[type(s)] for role, s in sources.items()}
