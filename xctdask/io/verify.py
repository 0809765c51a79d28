"""Check a whole Zarr store: every chunk present and decodable (``xctdask info --check``).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from xctdask.io import save_volume
>>> out = os.path.join(tempfile.mkdtemp(), "v.zarr")
>>> _ = save_volume(np.ones((4, 8, 8), np.uint8), out, chunks=(2, 8, 8), progress=False)
>>> report = check_store(out)
>>> report.ok, report.chunks, report.missing
(True, 2, [])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dask.array as da
import numpy as np

__all__ = ["StoreCheck", "check_store"]

_LISTED = 20  # chunk keys named in a report; counts are always complete


@dataclass
class StoreCheck:
    """What :func:`check_store` found.

    Attributes
    ----------
    path : str
    arrays : list of str
        The arrays checked (one, or every level of an OME-Zarr pyramid).
    chunks : int
        Chunks (shards) the arrays' grids hold.
    complete : bool
        :func:`xctdask.save_volume` marked the store complete, so every chunk must
        exist; in other stores an absent chunk means "fill value" and is reported as
        ``absent`` only.
    missing, undecodable : list of str
        Store keys (the first few) of chunks that should exist but do not, and of
        chunks that exist but cannot be decoded.
    n_missing, n_undecodable, n_absent : int
    """

    path: str
    arrays: list[str] = field(default_factory=list)
    chunks: int = 0
    complete: bool = False
    missing: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    n_missing: int = 0
    n_undecodable: int = 0
    n_absent: int = 0

    @property
    def ok(self) -> bool:
        return self.n_missing == 0 and self.n_undecodable == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return f"{self.path}: {self.chunks} chunks in {len(self.arrays)} array(s), all readable"
        parts = []
        if self.n_missing:
            parts.append(f"{self.n_missing} missing (first: {self.missing[0]!r})")
        if self.n_undecodable:
            parts.append(f"{self.n_undecodable} undecodable (first: {self.undecodable[0]!r})")
        return f"{self.path} is damaged: " + ", ".join(parts) + " chunks"


def _arrays(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    import zarr

    if isinstance(node, zarr.Array):
        return [(prefix or ".", node)]
    out = []
    for name, child in sorted(node.members(), key=lambda item: item[0]):
        if isinstance(child, zarr.Array):
            out.append((f"{prefix}{name}", child))
    return out


def check_store(
    path: str, *, storage_options: dict | None = None, progress: bool = False
) -> StoreCheck:
    """Check every chunk of a Zarr store: **computes** (reads the whole store once,
    one task per chunk on the active scheduler).

    Parameters
    ----------
    path : str
        A Zarr array or group (every array directly in it is checked), local or URL.
    storage_options : dict, optional
        For URLs.
    progress : bool
        Show a progress bar.
    """
    from xctdask import _progress
    from xctdask.io.open import _complete, open_zarr
    from xctdask.io.readers import ZarrReader

    node = open_zarr(path, "r", storage_options)
    report = StoreCheck(str(path), complete=_complete(dict(node.attrs)))
    statuses = []
    for name, array in _arrays(node):
        report.arrays.append(name)
        complete = report.complete or _complete(dict(array.attrs))
        reader = ZarrReader(array, str(path), verify=False)
        counts = [-(-n // g) for n, g in zip(reader.shape, reader.grid, strict=True)]
        report.chunks += int(np.prod(counts))
        everything = tuple(slice(0, n) for n in reader.shape)
        keyed = reader.grid_keys(everything)
        lost = set(reader.missing([k for _, k in keyed]))
        if complete:
            report.n_missing += len(lost)
            report.missing.extend(sorted(lost)[: _LISTED - len(report.missing)])
        else:
            report.n_absent += len(lost)
        status = da.map_blocks(
            _status_of_cell,
            array=array,
            grid=reader.grid,
            shape=reader.shape,
            chunks=tuple((1,) * c for c in counts),
            dtype=np.int8,
            meta=np.empty((0,) * len(counts), np.int8),
        )
        statuses.append((status, keyed, lost))
    if statuses:
        computed = _progress.compute(
            *(s for s, _, _ in statuses), progress=progress, description=f"checking {path}"
        )
        for values, (_, keyed, lost) in zip(computed, statuses, strict=True):
            for (_, key), ok in zip(keyed, np.asarray(values).ravel(), strict=True):
                if not ok and key not in lost:
                    report.n_undecodable += 1
                    if len(report.undecodable) < _LISTED:
                        report.undecodable.append(key)
    return report


def _status_of_cell(
    array: Any = None, grid: tuple = (), shape: tuple = (), block_info: Any = None
) -> np.ndarray:
    """1 if the chunk (shard) at this cell's grid coordinates decodes, else 0."""
    cell = block_info[None]["chunk-location"]
    region = tuple(
        slice(c * g, min((c + 1) * g, n)) for c, g, n in zip(cell, grid, shape, strict=True)
    )
    try:
        array[region]
        ok = 1
    except Exception:
        ok = 0
    return np.full((1,) * len(region), ok, np.int8)
