"""The one guard against writing over, or inside, anything a computation reads.

:func:`input_locations` walks the task graph of what is about to be written and
collects every place its data come from: Zarr stores (local or fsspec), files behind
the library's readers (TIFF, HDF5, raw), and the file a network was loaded from.
:func:`check_output` refuses an output location that is one of them, lies inside one,
or contains one. :func:`xctdask.save_volume` calls it before it creates or deletes
anything, so every command and every API route is covered, whatever happened between
reading and writing (``predict``, ``Segmenter.transform``, arithmetic).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from xctdask.io import open_volume, save_volume
>>> folder = tempfile.mkdtemp()
>>> scan = os.path.join(folder, "scan.zarr")
>>> _ = save_volume(np.zeros((2, 4, 4), np.uint8), scan, progress=False)
>>> vol = open_volume(scan) + 1
>>> check_output(os.path.join(scan, "sub.zarr"), vol)
Traceback (most recent call last):
...
ValueError: refusing to write ...sub.zarr: it lies inside ...scan.zarr, which ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from xctdask.io.locations import location

__all__ = ["check_output", "input_locations", "location_of"]

_MAX_NODES = 2_000_000  # a safety net for hand-built graphs; ours are compact layers


def location_of(obj: Any) -> str | None:
    """The location an object reads from, if it is one we know: a Zarr array or group,
    a reader of :mod:`xctdask.io.readers`, or a network loaded from a file."""
    source = getattr(obj, "source_location", None)
    if isinstance(source, str):  # readers and loaded networks say it themselves
        return source
    module = type(obj).__module__.split(".")[0]
    if module == "zarr" and hasattr(obj, "store_path"):
        return _zarr_location(obj.store_path)
    return None


def _zarr_location(store_path: Any) -> str | None:
    store, inner = store_path.store, store_path.path
    root = getattr(store, "root", None)  # LocalStore
    if root is not None:
        return location(os.path.join(str(root), inner))
    fs = getattr(store, "fs", None)  # FsspecStore
    if fs is not None:
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        base = str(store.path).strip("/")
        full = "/".join(p for p in (base, inner) if p)
        if protocol in ("file", "local"):
            return location("/" + full.lstrip("/"))
        return location(f"{protocol}://{full}")
    path = getattr(store, "path", None)  # ZipStore
    if path is not None:
        return location(str(path))
    return None  # a memory store: nothing on disk to protect


def _children(node: Any) -> Iterable[Any]:
    """What a task-spec node, container or partial holds."""
    from dask._task_spec import Alias, DataNode, Task, TaskRef

    if isinstance(node, DataNode):
        return (node.value,)
    if isinstance(node, Task):
        return (node.func, *node.args, *node.kwargs.values())
    if isinstance(node, (Alias, TaskRef)):
        return ()
    if isinstance(node, (list, tuple, set, frozenset)):
        return node
    if isinstance(node, dict):
        return node.values()
    func = getattr(node, "func", None)  # functools.partial and friends
    if func is not None and hasattr(node, "args"):
        return (func, *node.args, *(getattr(node, "keywords", None) or {}).values())
    return ()


def _layer_nodes(layer: Any) -> Iterator[Any]:
    from dask.blockwise import Blockwise

    if isinstance(layer, Blockwise):
        yield from (value for value, index in layer.indices if index is None)
        for dep in layer.io_deps.values():
            yield from getattr(dep, "mapping", {}).values()
        yield layer.task
        return
    mapping = getattr(layer, "mapping", None)
    yield from (mapping if mapping is not None else layer).values()


def input_locations(*collections: Any) -> set[str]:
    """Locations of every store, file and model file the collections' graphs read."""
    from xctdask.backend import unwrap

    found: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = []
    for collection in collections:
        data = unwrap(collection)
        graph = getattr(data, "__dask_graph__", lambda: None)()
        if graph is None:
            stack.append(data)
            continue
        layers = getattr(graph, "layers", {"": graph})
        for layer in layers.values():
            stack.extend(_layer_nodes(layer))
    visited = 0
    while stack and visited < _MAX_NODES:
        node = stack.pop()
        if id(node) in seen or node is None or isinstance(node, (str, bytes, int, float)):
            continue
        seen.add(id(node))
        visited += 1
        where = location_of(node)
        if where is not None:
            found.add(where)
            continue
        if type(node).__module__.split(".")[0] in ("numpy", "cupy", "torch"):
            continue
        stack.extend(_children(node))
    return found


def check_output(output: str | os.PathLike, *collections: Any, inputs: Iterable[Any] = ()) -> None:
    """Raise ``ValueError`` if writing ``output`` could touch what is read.

    Parameters
    ----------
    output : path or URL
        Where something is about to be written.
    *collections
        Dask collections (or DataArrays) whose graphs are searched for inputs.
    inputs : iterable of paths or URLs
        Further inputs, e.g. the files a command was given.
    """
    target = location(output)
    candidates = set(input_locations(*collections))
    candidates.update(location(p) for p in inputs if p is not None)
    for source in sorted(candidates):
        if source == target:
            how = "it is an input that this computation reads"
        elif target.startswith(source + "/"):
            how = f"it lies inside {_shown(source)}, which this computation reads"
        elif source.startswith(target + "/"):
            how = f"it contains {_shown(source)}, which this computation reads"
        else:
            continue
        raise ValueError(
            f"refusing to write {_shown(output)}: {how}; choose an output outside every input"
        )


def _shown(where: Any) -> str:
    text = os.fspath(where) if not isinstance(where, str) else where
    return text[len("file://") :] if text.startswith("file://") else text
