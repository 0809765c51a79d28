"""``predict``: a network over a whole volume, lazily, seamless across chunk borders.

Three parts, as MONAI's inferers are: the *splitter*
(:class:`~xctdask.inference.plan.InferencePlan`: the global tile lattice and the
inference blocks), the *runner* (:func:`~xctdask.inference.runner.run_block`) and one
*merger* per output (:mod:`~xctdask.inference.mergers`).

The graph has **one task per inference block** (a union of whole input chunks, about
1024 voxels along each tiled axis by default). When the volume comes straight from a
store opened by :func:`xctdask.open_volume` (Zarr, TIFF, HDF5, raw), the task reads its
block and halo from the store itself, so the graph is one compact Blockwise layer and
nothing else; for any other Dask array, each block task takes the input chunks its
region overlaps. Tiles sit on one global lattice, so the result does not depend on the
chunking and equals MONAI's ``sliding_window_inference``; tiles that straddle a block
border are run by both blocks (``attrs["redundancy"]`` says how many network voxels
that costs per output voxel, relative to the lattice's own; about 1.1–1.3 by default).
The network is one piece of task data: Dask sends it to each worker once and each
worker process places it on its device once.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from torch import nn

from xctdask.backend import as_dask, check_mean_std, meta_like, unwrap, validate_volume
from xctdask.engine import check_device
from xctdask.inference.lattice import BLENDS
from xctdask.inference.mergers import MERGERS, OUTPUTS
from xctdask.inference.plan import PRECISIONS, InferencePlan
from xctdask.inference.runner import BlockSpec, assemble, read_from, run_block
from xctdask.models.base import Network, as_network

__all__ = ["OUTPUTS", "predict", "store_reader"]

_AXES = "zyx"


def store_reader(data: da.Array) -> Any | None:
    """The reader behind a Dask array that :func:`xctdask.open_volume` made from a
    store (Zarr, TIFF, HDF5, raw), or None for any other array.

    Such an array is a single read layer over a :class:`~xctdask.io.readers.VolumeReader`
    whose region reads give exactly the array's voxels, so a task can read any region
    (a block plus its halo) from the store directly.
    """
    from xctdask.io.readers import VolumeReader

    layers = data.__dask_graph__().layers
    if len(layers) != 2 or data.name not in layers:
        return None
    (other,) = (layer for name, layer in layers.items() if name != data.name)
    values = list(getattr(other, "mapping", other).values())
    if len(values) != 1 or not isinstance(values[0], VolumeReader):
        return None
    reader = values[0]
    if tuple(reader.shape) != tuple(data.shape) or np.dtype(reader.dtype) != data.dtype:
        return None
    return reader


def _fingerprint(net: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(type(net).__qualname__.encode())
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _probe(net: Network, channels: int, tile: tuple[int, ...], spatial_dims: int) -> dict:
    """Run ``net`` on one tile-shaped input without computing (meta tensors).

    Returns the split outputs. Raises ValueError when the network does not accept the
    input.
    """
    shape = (1, channels, *(tile[1:] if spatial_dims == 2 else tile))
    try:
        with torch.no_grad():
            try:
                meta = copy.deepcopy(net).to("meta").eval()
                return meta.split(meta(torch.empty(shape, device="meta")))
            except NotImplementedError:  # an operator without a meta kernel
                cpu = copy.deepcopy(net).cpu().eval()
                return cpu.split(cpu(torch.zeros(shape)))
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"the network does not accept tiles of shape {shape} (batch, channels, "
            f"{'y, x' if spatial_dims == 2 else 'z, y, x'}): {err}. Check `context` "
            "(the channels of a 2.5D network) and `tile`."
        ) from err


def _tile(tile: Any, spatial_dims: int) -> tuple[int, ...]:
    if tile is None:
        tile = 256 if spatial_dims == 2 else 64
    tile = (tile,) * spatial_dims if np.isscalar(tile) else tuple(tile)
    if len(tile) != spatial_dims or any(int(t) != t or t < 1 for t in tile):
        raise ValueError(
            f"tile must be a positive int or {spatial_dims} positive ints for a "
            f"{spatial_dims}-D network, got {tile!r}"
        )
    tile = tuple(int(t) for t in tile)
    return (1, *tile) if spatial_dims == 2 else tile


def _stats(vol: da.Array, net: nn.Module, normalize: Any) -> Any:
    """``None``, a (mean, std) tuple, or a 2-element Dask array (lazy, global)."""
    if isinstance(normalize, str) and normalize == "auto":
        normalize = getattr(net, "normalization", None) or "volume"
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize != "volume":
            raise ValueError(
                f"normalize must be 'auto', 'volume', (mean, std) or None; got {normalize!r}"
            )
        finite = da.where(da.isfinite(vol), vol.astype(np.float64), np.nan)
        return da.stack([da.nanmean(finite), da.nanstd(finite)]).rechunk(-1)
    return check_mean_std(normalize)


def _check_block(block: Any) -> tuple[int, int, int] | None:
    if block is None:
        return None
    values = (block,) * 3 if np.isscalar(block) else tuple(block)
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"block must be a positive int or three, got {block!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _from_reader(net, stats, spec, reader, index):
    """A block task on a store-backed volume: read the region, run, finish."""
    block = spec.plan.block_region(index)
    read = spec.plan.read_region(block)
    return run_block(net, stats, spec, block, read, read_from(reader, read))


def _from_parts(net, stats, spec, index, places, *parts):
    """A block task on a Dask volume: assemble the region from its chunks, run, finish."""
    block = spec.plan.block_region(index)
    read = spec.plan.read_region(block)
    return run_block(net, stats, spec, block, read, assemble(list(parts), places, read))


class _AxisOverlaps:
    """Per axis: the chunks a range overlaps, with the slices into range and chunk
    (cached per range: the blocks of a grid share few distinct ranges per axis)."""

    def __init__(self, chunks: tuple[int, ...]):
        self.bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        self.cache: dict[tuple[int, int], list[tuple[int, slice, slice]]] = {}

    def __call__(self, lo: int, hi: int) -> list[tuple[int, slice, slice]]:
        hit = self.cache.get((lo, hi))
        if hit is None:
            b = self.bounds
            first = max(int(np.searchsorted(b, lo, side="right")) - 1, 0)
            last = min(int(np.searchsorted(b, hi, side="left")), len(b) - 1)
            hit = []
            for i in range(first, last):
                a, z = max(lo, int(b[i])), min(hi, int(b[i + 1]))
                hit.append((i, slice(a - lo, z - lo), slice(a - int(b[i]), z - int(b[i]))))
            self.cache[(lo, hi)] = hit
        return hit


def _graph(data, plan, spec, net_key, net, stats, merger, channels) -> da.Array:
    """The predict array: one task per block (see the module docstring).

    The layer is built from task-spec objects directly, one ``Task`` per block whose
    arguments are references to the shared network, plan and reader and the block's
    index (no per-block dictionaries, no parsing of nested tuples).
    """
    from dask._task_spec import DataNode, Task, TaskRef

    lead = ((channels,),) if merger.per_class else ()
    lead_index = (0,) if merger.per_class else ()
    chunks = (*lead, *plan.blocks)
    meta = meta_like(data, merger.dtype, len(chunks))
    name = "xctdask-predict-" + tokenize(data.name, net_key, spec, _token(stats))
    spec_key = "xctdask-spec-" + tokenize(spec)
    dsk: dict[Any, Any] = {net_key: DataNode(net_key, net), spec_key: DataNode(spec_key, spec)}
    dependencies = []
    if isinstance(stats, da.Array):
        stats_arg: Any = TaskRef((stats.name, 0))
        dependencies.append(stats)
    else:
        stats_arg = DataNode(None, stats)
    reader = store_reader(data)
    indices = itertools.product(*(range(n) for n in plan.numblocks))
    if reader is not None:  # straight from the store: the blocks read it themselves
        reader_key = "xctdask-reader-" + tokenize(reader.token())
        dsk[reader_key] = DataNode(reader_key, reader)
        for index in indices:
            key = (name, *lead_index, *index)
            dsk[key] = Task(
                key,
                _from_reader,
                TaskRef(net_key),
                stats_arg,
                TaskRef(spec_key),
                TaskRef(reader_key),
                DataNode(None, index),
            )
    else:  # any other Dask array: each block takes the chunks its region overlaps
        dependencies.append(data)
        axes = [_AxisOverlaps(c) for c in data.chunks]
        for index in indices:
            read = plan.read_region(plan.block_region(index))
            per_axis = [overlaps(lo, hi) for overlaps, (lo, hi) in zip(axes, read, strict=True)]
            keys, places = [], []
            for combo in itertools.product(*per_axis):
                keys.append(TaskRef((data.name, *(c[0] for c in combo))))
                places.append((tuple(c[1] for c in combo), tuple(c[2] for c in combo)))
            key = (name, *lead_index, *index)
            dsk[key] = Task(
                key,
                _from_parts,
                TaskRef(net_key),
                stats_arg,
                TaskRef(spec_key),
                DataNode(None, index),
                DataNode(None, places),
                *keys,
            )
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    return da.Array(graph, name, chunks, dtype=merger.dtype, meta=meta)


def _worker_memory() -> int | None:
    """The memory one task may use on the active cluster: the smallest worker memory
    limit divided by that worker's threads (tasks run side by side); None without a
    cluster or limits."""
    from xctdask.cluster import active_client

    client = active_client()
    if client is None:
        return None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    except TypeError:  # an older distributed
        workers = client.scheduler_info()["workers"].values()
    except Exception:  # a cluster that cannot say: no limit assumed
        return None
    shares = [
        int(w["memory_limit"]) // max(1, int(w.get("nthreads", 1)))
        for w in workers
        if w.get("memory_limit")
    ]
    return min(shares) if shares else None


def _token(stats: Any) -> Any:
    return stats.name if isinstance(stats, da.Array) else stats


def predict(
    vol: Any,
    net: nn.Module,
    *,
    output: str = "labels",
    tile: int | tuple[int, ...] | None = None,
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 8,
    axes: str = "z",
    context: int | None = None,
    normalize: Any = "auto",
    device: str = "auto",
    precision: str = "auto",
    channels_last: str = "auto",
    block: int | tuple[int, int, int] | None = None,
    spatial_dims: int | None = None,
    outputs: tuple[str, ...] | None = None,
) -> xr.DataArray:
    """Run a trained network over a volume, lazily, with seamless halo-averaged tiles.

    Each voxel's result is the blend-weighted average over every tile of a global
    lattice that covers it (MONAI's sliding-window lattice and gaussian weights), so
    the output does not depend on the chunking and shows no seam at chunk borders.
    The graph has one task per inference block, which reads its region straight from
    the store when the volume was opened from one; the network is sent to each worker
    once and runs on that worker's GPU when it has one.

    Parameters
    ----------
    vol : array, DataArray or path-opened volume
        A 3-D volume (NumPy, Dask, CuPy-backed Dask, or a DataArray from
        :func:`xctdask.open_volume`), or a 4-D ``(t, z, y, x)`` series: each time step
        is predicted as a volume (``normalize="volume"`` then uses each step's own
        statistics) and a ``t`` dim leads the result.
    net : torch.nn.Module
        A network of :func:`xctdask.models.build`, or any module: then give
        ``spatial_dims`` (and ``outputs`` unless it returns class logits), see
        :func:`xctdask.models.wrap`. Its outputs must have the spatial size of its input.
    output : {"labels", "probabilities", "confidence", "entropy", "denoised", "logits"}
        ``labels`` (uint8; 255 where the input is not finite), ``probabilities``
        (float32 with a leading ``class`` dim; the average of per-tile softmax),
        ``confidence`` (float32, the top-class probability), ``entropy`` (float32,
        normalised entropy of the probabilities in [0, 1]: an uncertainty map),
        ``denoised`` (float32, the denoised volume of a network that declares a
        ``denoised`` output, in the input's grey values: the normalisation is undone),
        ``logits`` (the averaged raw output, what MONAI's ``sliding_window_inference``
        returns). NaN where the input is not finite.
    tile : int or tuple of int, optional
        Tile size over the network's spatial axes ((y, x) for 2-D, (z, y, x) for 3-D).
        Default 256 (2-D) or 64 (3-D); shrunk along any axis the volume is shorter.
    overlap : float
        Fraction of a tile shared with its neighbour: step = int(tile·(1−overlap)).
    blend : {"gaussian", "linear", "constant"}
        Tile weights; "gaussian" uses σ = 0.125·tile, clamped at 1e-3 as MONAI does.
    batch_size : int
        Tiles per network call.
    axes : str
        For 2-D and 2.5-D networks, the axes to slice along: "z" (default), "y", "x",
        or several, e.g. "zyx" averages the probabilities of three orthogonal
        slicings (tri-planar). Ignored by 3-D networks.
    context : int, optional
        Adjacent slices fed as channels to a 2.5D network; default ``net.context`` (or
        1). Slices beyond the volume's ends repeat the end slice.
    normalize : "auto", "volume", (mean, std) or None
        Global intensity normalisation, never per chunk or tile. "auto" uses the
        statistics stored on the network (``net.normalization``, set by
        :func:`xctdask.train`), else "volume": the mean and std of the finite voxels,
        computed lazily as part of the same graph (one extra read of the volume).
    device : str
        "auto" picks each worker's GPU when it has one, else its CPU; "cpu", "cuda",
        "cuda:N" force one. A name PyTorch does not know is refused at once; so is a
        GPU this process lacks when no cluster is active (the blocks run here). On a
        cluster each worker checks its own devices and fails the task in those words.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; "auto" is bf16 on GPU and fp32 on CPU.
    channels_last : {"auto", "on", "off"}
        Memory format for 2-D networks; "auto" uses it on GPU.
    block : int or (int, int, int), optional
        Inference block size in voxels (rounded to whole input chunks); default: large
        enough along tiled axes that re-run border tiles cost at most ~1.3× (see
        :mod:`xctdask.inference.plan`), within about 1 GiB per task and an eighth of
        the memory a task gets on the active cluster (the smallest worker memory limit
        over its threads).
    spatial_dims, outputs
        Declarations for a plain ``torch.nn.Module``.

    Returns
    -------
    xarray.DataArray
        Lazy (Dask-backed), with the input's coords; its chunks are the inference
        blocks (unions of the input's chunks). ``attrs`` record the lattice (``tiles``
        per slicing, ``tile``, ``overlap``, ``blend``), the blocks' ``redundancy`` and
        ``tasks_per_block`` (1).

    Examples
    --------
    >>> import numpy as np, xctdask as xd
    >>> net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    >>> vol = np.random.default_rng(0).normal(size=(4, 40, 40)).astype(np.float32)
    >>> labels = xd.predict(vol, net, tile=32)
    >>> labels.dtype, labels.shape, labels.attrs["tiles"]
    (dtype('uint8'), (4, 40, 40), 16)
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if channels_last not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {channels_last!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    block = _check_block(block)
    from xctdask.cluster import active_client

    # without a cluster the blocks run in this process: its devices are the ones to check
    check_device(device, here=active_client() is None)
    network = as_network(net, spatial_dims=spatial_dims, outputs=outputs)
    if getattr(unwrap(vol), "ndim", 0) == 4:  # a series: each step read by its own blocks
        from xctdask.io.open import each_time_step

        options = dict(
            output=output, tile=tile, overlap=overlap, blend=blend, batch_size=batch_size,
            axes=axes, context=context, normalize=normalize, device=device,
            precision=precision, channels_last=channels_last, block=block,
        )  # fmt: skip
        return each_time_step(lambda step: predict(step, network, **options), vol)
    validate_volume(vol)
    dims = network.spatial_dims
    if dims == 2:
        if (
            not isinstance(axes, str)
            or not axes
            or any(a not in _AXES for a in axes)
            or len(set(axes)) != len(axes)
        ):
            raise ValueError(f"axes must be distinct letters from 'zyx', got {axes!r}")
    else:
        axes = "z"
    if context is None:
        context = int(network.context) if dims == 2 else 1
    if not isinstance(context, int) or context < 1 or context % 2 == 0:
        raise ValueError(f"context must be a positive odd integer, got {context!r}")
    if dims == 3 and context != 1:
        raise ValueError("context (2.5D) needs a 2-D network; a 3-D network sees tiles")
    if dims == 2 and network.context != 1 and int(network.context) != context:
        raise ValueError(
            f"the network was built for context={network.context} adjacent slices; got "
            f"context={context}"
        )
    merger = MERGERS[output]
    if merger.source not in network.outputs:
        have = ", ".join(network.outputs)
        if merger.source == "denoised":
            raise ValueError(
                f"output='denoised' needs a network that declares a denoised output; "
                f"this one produces {have}"
            )
        raise ValueError(
            f"output={output!r} needs class scores (a 'logits' output); this network "
            f"produces {have}: use output='denoised'"
        )
    tile3 = _tile(tile, dims)
    data = as_dask(unwrap(vol))
    in_channels = int(network.in_channels) * context
    probe_tile = tuple(min(t, n) for t, n in zip(tile3, data.shape, strict=True))
    channels = int(_probe(network, in_channels, probe_tile, dims)[merger.source].shape[1])
    if output == "labels" and channels > 255:
        raise ValueError(
            f"the network predicts {channels} classes, but labels are uint8 with 255 "
            "reserved for unlabelled voxels (at most 255 classes); use "
            "output='probabilities' or a network with fewer classes"
        )
    shipped = copy.deepcopy(network).cpu().eval()
    net_key = "xctdask-model-" + _fingerprint(shipped)
    stats = _stats(data, network, normalize)
    plan = InferencePlan.build(
        data.shape,
        data.chunks,
        spatial_dims=dims,
        context=context,
        tile=tile3,
        overlap=overlap,
        blend=blend,
        axes=axes,
        channels=channels,
        block=block,
        worker_memory=_worker_memory(),
    )
    spec = BlockSpec(plan, output, batch_size, device, precision, channels_last)
    result = _graph(data, plan, spec, net_key, shipped, stats, merger, channels)
    return _wrap(result, vol, merger, channels, plan, overlap, blend)


def _wrap(result: da.Array, vol: Any, merger, channels: int, plan, overlap, blend) -> xr.DataArray:
    dims = ("z", "y", "x")
    coords: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    if isinstance(vol, xr.DataArray):
        dims = tuple(vol.dims)
        coords = {k: v for k, v in vol.coords.items() if set(v.dims) <= set(dims)}
        attrs = {
            k: v for k, v in vol.attrs.items() if k in ("voxel_size", "unit", "storage_chunks")
        }
    if merger.per_class:
        dims = ("class", *dims)
        coords = {**coords, "class": np.arange(channels)}
    attrs.update(
        output=merger.name,
        tile=list(plan.slicings[0].lattice.tile),
        tiles=plan.slicings[0].lattice.n_tiles,
        overlap=overlap,
        blend=blend,
        redundancy=round(plan.redundancy, 4),
        blocks=[len(b) for b in plan.blocks],
    )
    if merger.name == "labels":
        attrs["kind"] = "labels"
    return xr.DataArray(result, dims=dims, coords=coords, attrs=attrs)
