"""``predict``: a network over a whole volume, lazily, seamless across chunk borders.

How the graph is built (per slicing, for every output chunk):

1. the chunk's *input region* is gathered: the chunk itself plus what its tiles reach
   beyond it (and the 2.5D context slices), as slices of the neighbouring input chunks;
2. one task runs the tiles the chunk **owns**, those whose start lies inside it, so each
   tile of the global lattice is evaluated exactly once; it returns the weighted network
   outputs cut into one piece per output chunk they reach;
3. one task per output chunk adds the pieces that reach it, divides by the sum of the
   blend weights there (a function of the lattice alone) and reduces to labels,
   probabilities, confidence or the denoised volume.

Tiles sit on one global lattice (:mod:`xctdask.inference.lattice`), so the result does
not depend on the chunking. The network is one piece of task data: Dask sends it to each
worker once and each worker process places it on its device once.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import operator
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from torch import nn

from xctdask.backend import as_dask, is_cupy, unwrap, validate_volume
from xctdask.inference.lattice import BLENDS, Lattice
from xctdask.inference.runner import BlendSpec, TileSpec, blend_chunk, finish, run_tiles

__all__ = ["OUTPUTS", "predict"]

OUTPUTS = ("labels", "probabilities", "confidence", "denoised", "logits")
_AXES = "zyx"


def _bounds(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _overlapping_blocks(bounds: list[np.ndarray], region: tuple[tuple[int, int], ...]):
    """Yield ``(block index, block region, block region ∩ region)`` for every chunk
    that overlaps ``region`` (regions as per-axis ``(lo, hi)`` tuples)."""
    ranges = []
    for b, (lo, hi) in zip(bounds, region, strict=True):
        first = int(np.searchsorted(b, lo, side="right")) - 1
        last = int(np.searchsorted(b, hi, side="left"))
        ranges.append(range(max(first, 0), min(last, len(b) - 1)))
    for index in itertools.product(*ranges):
        block = tuple((int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index, strict=True))
        cut = tuple(
            (max(lo, a), min(hi, z)) for (lo, hi), (a, z) in zip(region, block, strict=True)
        )
        yield index, block, cut


def _network_kind(net: nn.Module) -> str:
    """ "segment", "stacked" (denoised + logits) or "denoise" (an image only)."""
    from xctdask.train import _kind

    produces = getattr(net, "produces", None)
    if produces is not None:
        return str(produces)
    return {"pix2pix": "denoise"}.get(_kind(net), _kind(net))


def _fingerprint(net: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(type(net).__qualname__.encode())
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _probe(net: nn.Module, channels: int, tile: tuple[int, ...], spatial_dims: int) -> Any:
    """Run ``net`` on one tile-shaped input without computing (meta tensors).

    Returns the output (tensor or tuple). Raises ValueError when the network does not
    accept the input.
    """
    shape = (1, channels, *(tile[1:] if spatial_dims == 2 else tile))
    try:
        with torch.no_grad():
            try:
                meta = copy.deepcopy(net).to("meta").eval()
                return meta(torch.empty(shape, device="meta"))
            except NotImplementedError:  # an operator without a meta kernel
                cpu = copy.deepcopy(net).cpu().eval()
                return cpu(torch.zeros(shape))
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
    if normalize == "auto":
        normalize = getattr(net, "normalization", None) or "volume"
    if normalize is None:
        return None
    if normalize == "volume":
        finite = da.where(da.isfinite(vol), vol.astype(np.float64), np.nan)
        return da.stack([da.nanmean(finite), da.nanstd(finite)]).rechunk(-1)
    mean, std = (float(v) for v in normalize)
    if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
        raise ValueError(f"normalize needs a finite mean and a positive std, got {normalize!r}")
    return (mean, std)


def _slicing(
    vol: da.Array,
    net: nn.Module,
    model_key: str,
    stats: Any,
    *,
    mode: str,
    reduce: str,
    channels: int,
    tile: tuple[int, ...],
    overlap: float,
    blend: str,
    spatial_dims: int,
    context: int,
    batch_size: int,
    device: str,
    precision: str,
    channels_last: str,
) -> da.Array:
    """The graph for one slicing of ``vol`` (slices along axis 0 for 2-D networks)."""
    lattice = Lattice.build(vol.shape, tile, overlap, blend)
    name = "xctdask-predict-" + tokenize(
        vol.name,
        model_key,
        stats if not isinstance(stats, da.Array) else stats.name,
        mode,
        reduce,
        tile,
        overlap,
        blend,
        spatial_dims,
        context,
        batch_size,
        device,
        precision,
        channels_last,
    )
    half = (context - 1) // 2 if spatial_dims == 2 else 0
    bounds = [_bounds(c) for c in vol.chunks]
    dsk: dict[Any, Any] = {model_key: net}  # task data: each worker fetches it once
    stats_arg = (stats.name, 0) if isinstance(stats, da.Array) else stats
    incoming: dict[tuple[int, ...], list[tuple[Any, tuple]]] = {}
    for index in np.ndindex(*vol.numblocks):
        chunk = tuple((int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index, strict=True))
        owned = [lattice.owned(a, lo, hi) for a, (lo, hi) in enumerate(chunk)]
        if any(len(o) == 0 for o in owned):
            continue
        extent = tuple(
            (int(o[0]), int(o[-1]) + t) for o, t in zip(owned, lattice.tile, strict=True)
        )
        read = extent
        if spatial_dims == 2:  # slices of the chunk and their context
            read = (
                (max(chunk[0][0] - half, 0), min(chunk[0][1] + half, vol.shape[0])),
                *extent[1:],
            )
        parts, places = [], []
        for s_index, s_region, cut in _overlapping_blocks(bounds, read):
            places.append(
                tuple((a - r0, b - r0) for (a, b), (r0, _) in zip(cut, read, strict=True))
            )
            key = (vol.name, *s_index)
            if cut != s_region:
                sliver = (name + "-in", *index, *s_index)
                dsk[sliver] = (
                    operator.getitem,
                    key,
                    tuple(
                        slice(a - sr[0], b - sr[0])
                        for (a, b), sr in zip(cut, s_region, strict=True)
                    ),
                )
                key = sliver
            parts.append(key)
        destinations = []
        dest_indices = []
        for d_index, _, cut in _overlapping_blocks(bounds, extent):
            destinations.append(cut)
            dest_indices.append(d_index)
        spec = TileSpec(
            lattice=lattice,
            spatial_dims=spatial_dims,
            context=context,
            mode=mode,
            chunk=chunk,
            read=read,
            extent=extent,
            parts=tuple(places),
            destinations=tuple(destinations),
            batch_size=batch_size,
            device=device,
            precision=precision,
            channels_last=channels_last,
        )
        run_key = (name + "-run", *index)
        dsk[run_key] = (run_tiles, model_key, spec, list(parts), stats_arg)
        for j, (d_index, region) in enumerate(zip(dest_indices, destinations, strict=True)):
            piece_key = (name + "-piece", *index, *d_index)
            dsk[piece_key] = (operator.getitem, run_key, j)
            incoming.setdefault(d_index, []).append((piece_key, region))
    lead = (0,) if reduce in ("none", "probabilities") else ()
    for index in np.ndindex(*vol.numblocks):
        chunk = tuple((int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index, strict=True))
        arrivals = incoming.get(index, [])
        where = tuple(
            tuple((a - lo, b - lo) for (a, b), (lo, _) in zip(region, chunk, strict=True))
            for _, region in arrivals
        )
        spec = BlendSpec(
            lattice=lattice, chunk=chunk, pieces=where, channels=channels, reduce=reduce
        )
        dsk[(name, *lead, *index)] = (
            blend_chunk,
            [k for k, _ in arrivals],
            spec,
            (vol.name, *index),
        )
    dependencies = [vol] + ([stats] if isinstance(stats, da.Array) else [])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    if reduce == "labels":
        dtype, chunks = np.uint8, vol.chunks
    else:
        dtype = np.float32
        chunks = ((channels,), *vol.chunks) if lead else vol.chunks
    xp = np
    if is_cupy(vol):  # the blend returns CuPy blocks for CuPy input
        import cupy as xp
    meta = xp.empty((0,) * len(chunks), dtype=dtype)
    return da.Array(graph, name, chunks, dtype=dtype, meta=meta)


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
) -> xr.DataArray:
    """Run a trained network over a volume, lazily, with seamless halo-averaged tiles.

    Each voxel's result is the blend-weighted average over every tile of a global
    lattice that covers it (MONAI's sliding-window lattice and gaussian weights), so
    the output does not depend on the chunking and shows no seam at chunk borders.
    Every lattice tile is evaluated exactly once; the network is sent to each worker
    once and runs on that worker's GPU when it has one.

    Parameters
    ----------
    vol : array, DataArray or path-opened volume
        A 3-D volume (NumPy, Dask, CuPy-backed Dask, or a DataArray from
        :func:`xctdask.open_volume`). Its chunks are the output chunks.
    net : torch.nn.Module
        A network from :func:`xctdask.models.build` (or any module with
        ``spatial_dims`` 2 or 3 whose output has the spatial size of its input).
    output : {"labels", "probabilities", "confidence", "denoised", "logits"}
        ``labels`` (uint8; 255 where the input is not finite), ``probabilities``
        (float32 with a leading ``class`` dim; the average of per-tile softmax),
        ``confidence`` (float32, the top-class probability), ``denoised`` (float32,
        the denoised volume of a denoising or stacked network, in the input's grey
        values: the normalisation is undone), ``logits`` (the
        averaged raw output, what MONAI's ``sliding_window_inference`` returns).
    tile : int or tuple of int, optional
        Tile size over the network's spatial axes ((y, x) for 2-D, (z, y, x) for 3-D).
        Default 256 (2-D) or 64 (3-D); shrunk along any axis the volume is shorter.
    overlap : float
        Fraction of a tile shared with its neighbour: step = int(tile·(1−overlap)).
    blend : {"gaussian", "linear", "constant"}
        Tile weights; "gaussian" uses σ = 0.125·tile, clamped at 1e-3 as MONAI does.
    batch_size : int
        Tiles per network call. Together with the chunking it bounds memory per task.
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
        "auto" picks each worker's GPU when it has one, else its CPU.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; "auto" is bf16 on GPU and fp32 on CPU.
    channels_last : {"auto", "on", "off"}
        Memory format for 2-D networks; "auto" uses it on GPU.

    Returns
    -------
    xarray.DataArray
        Lazy (Dask-backed), with the input's coords and chunks; ``attrs`` record the
        tile lattice (``tiles``: number of network tiles per slicing).

    Memory per task is about ``4·C·(chunk + tile)`` bytes for the weighted outputs of
    ``C`` channels over a chunk grown by one tile along each tiled axis, plus the input
    region and one batch of tiles on the device.

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
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if channels_last not in ("auto", "on", "off"):
        raise ValueError(f"channels_last must be auto, on or off, got {channels_last!r}")
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    validate_volume(vol)
    spatial_dims = getattr(net, "spatial_dims", None)
    if spatial_dims not in (2, 3):
        raise ValueError(
            "net must have `spatial_dims` 2 (slice network) or 3 (volume network); "
            f"got {spatial_dims!r}"
        )
    if spatial_dims == 2:
        if not axes or any(a not in _AXES for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct letters from 'zyx', got {axes!r}")
    else:
        axes = "z"
    net_context = getattr(net, "context", None)
    if context is None:
        context = int(net_context) if net_context is not None and spatial_dims == 2 else 1
    if not isinstance(context, int) or context < 1 or context % 2 == 0:
        raise ValueError(f"context must be a positive odd integer, got {context!r}")
    if spatial_dims == 3 and context != 1:
        raise ValueError("context (2.5D) needs a 2-D network; a 3-D network sees tiles")
    if net_context is not None and spatial_dims == 2 and int(net_context) != context:
        raise ValueError(
            f"the network was built for context={net_context} adjacent slices; got "
            f"context={context}"
        )
    kind = _network_kind(net)
    if output in ("labels", "probabilities", "confidence") and kind == "denoise":
        raise ValueError(
            f"output={output!r} needs class scores, but this network only denoises; "
            "use output='denoised'"
        )
    if output == "denoised" and kind == "segment":
        raise ValueError(
            "output='denoised' needs a denoising network (stacked-denseuseg or pix2pix)"
        )
    tile3 = _tile(tile, spatial_dims)
    data = as_dask(unwrap(vol))
    in_channels = int(getattr(net, "in_channels", 1)) * context
    probe_tile = tuple(min(t, n) for t, n in zip(tile3, data.shape, strict=True))
    probed = _probe(net, in_channels, probe_tile, spatial_dims)
    if isinstance(probed, tuple):
        probed = probed[0] if output == "denoised" else probed[1]
    channels = int(probed.shape[1])
    if output == "labels" and channels > 255:
        raise ValueError(
            f"the network predicts {channels} classes, but labels are uint8 with 255 "
            "reserved for unlabelled voxels (at most 255 classes); use "
            "output='probabilities' or a network with fewer classes"
        )
    mode = {"denoised": "denoised", "logits": "logits"}.get(output, "softmax")
    shipped = copy.deepcopy(net).cpu().eval()
    model_key = "xctdask-model-" + _fingerprint(shipped)
    stats = _stats(data, net, normalize)
    if len(axes) == 1:
        reduce = {"labels": "labels", "confidence": "confidence", "probabilities": "none"}
        reduce = reduce.get(output, "squeeze" if output == "denoised" else "none")
    else:
        reduce = "none"
    results = []
    for axis in axes:
        a = _AXES.index(axis)
        order = (a, *[i for i in range(3) if i != a])
        source = data.transpose(order) if a else data
        part = _slicing(
            source,
            shipped,
            model_key,
            stats,
            mode=mode,
            reduce=reduce,
            channels=channels,
            tile=tile3,
            overlap=overlap,
            blend=blend,
            spatial_dims=spatial_dims,
            context=context,
            batch_size=batch_size,
            device=device,
            precision=precision,
            channels_last=channels_last,
        )
        if a:
            back = tuple(order.index(i) for i in range(3))
            part = part.transpose(back if part.ndim == 3 else (0, *(b + 1 for b in back)))
        results.append(part)
    result = _combine(results, data, reduce, output)
    return _wrap(
        result, vol, output, channels, Lattice.build(data.shape, tile3, overlap, blend), overlap
    )


def _combine(results: list[da.Array], data: da.Array, reduce: str, output: str) -> da.Array:
    """One slicing's result as it is; several (tri-planar) averaged, then reduced."""
    if len(results) == 1:
        return results[0]
    mean = results[0]
    for other in results[1:]:
        mean = mean + other
    mean = mean / np.float32(len(results))
    final = {"labels": "labels", "confidence": "confidence", "denoised": "squeeze"}.get(
        output, "none"
    )

    def reduce_block(values: np.ndarray, source: np.ndarray) -> np.ndarray:
        return finish(values.copy(), final, ~np.isfinite(source))

    if final == "none":
        return da.blockwise(reduce_block, "czyx", mean, "czyx", data, "zyx", dtype=np.float32)
    dtype = np.uint8 if final == "labels" else np.float32
    return da.blockwise(
        reduce_block, "zyx", mean, "czyx", data, "zyx", dtype=dtype, concatenate=True
    )


def _wrap(
    result: da.Array, vol: Any, output: str, channels: int, lattice: Lattice, overlap: float
) -> xr.DataArray:
    dims = ("z", "y", "x")
    coords: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    if isinstance(vol, xr.DataArray):
        dims = tuple(vol.dims)
        coords = {k: v for k, v in vol.coords.items() if set(v.dims) <= set(dims)}
        attrs = {k: v for k, v in vol.attrs.items() if k in ("voxel_size", "unit")}
    if result.ndim == 4:
        dims = ("class", *dims)
        coords = {**coords, "class": np.arange(channels)}
    attrs.update(
        output=output,
        tile=list(lattice.tile),
        tiles=lattice.n_tiles,
        overlap=overlap,
        blend=lattice.blend,
    )
    return xr.DataArray(result, dims=dims, coords=coords, attrs=attrs)
