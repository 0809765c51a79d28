"""Grad-CAM for the segmentation networks: which regions made a class's score.

The SR-CT self-correction paper (Section "Model interpretability", Fig. 11) uses
Grad-CAM [Selvaraju et al., ICCV 2017], which "weights features maps using the
gradients of the predicted class's score and keeps those with a positive contribution
to the class. These features are then projected and overlayed on the original image".
For a segmentation network the "class's score" is the sum of the class's logits over
the voxels the network assigns to that class (all voxels if it assigns none), the
usual semantic-segmentation form of Grad-CAM. The computation is captum's
``LayerGradCam`` (gradient-weighted feature maps of ``layer``, ReLU), upsampled to the
input with captum's ``LayerAttribution.interpolate``.

2-D and 2.5-D networks work slice by slice (a slice's context slices around it, the
volume's end slices repeated), so :func:`gradcam` runs over chosen slices now or, with
``lazy=True``, over the whole volume as a Dask array (one task per chunk of z). 3-D
networks take the given (sub-)volume at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["default_layer", "gradcam"]

# captum hooks the layer of the network object itself: two threads explaining with the
# same network at once (Dask's threaded scheduler runs chunks in parallel) would each
# catch the other's feature maps. One explanation at a time per process (seen in CI as
# "the differentiated Tensor ... not used in the graph").
_HOOK_LOCK = threading.Lock()


def default_layer(net: nn.Module) -> nn.Module:
    """The last decoder block of a U-Net-like network (full resolution, semantic
    features); other networks must name a layer."""
    decoder = getattr(net, "decoder", None)
    if isinstance(decoder, (nn.ModuleList, nn.Sequential)) and len(decoder):
        return decoder[-1]
    raise ValueError(
        f"{type(net).__name__} has no decoder blocks: pass layer= (a module of the network "
        "or its dotted name, e.g. 'decoder.1')"
    )


def _layer(net: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    if layer is None:
        return default_layer(net)
    if isinstance(layer, str):
        try:
            return net.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in net.named_modules() if n and n.count(".") < 2]
            raise ValueError(f"the network has no layer {layer!r}; some it has: {names}") from None
    return layer


def _normalized(data: np.ndarray, net: nn.Module) -> np.ndarray:
    stats = getattr(net, "normalization", None)
    if stats is None:
        finite = data[np.isfinite(data)]
        stats = (float(finite.mean()), float(max(finite.std(), 1e-12)))
    mean, std = (float(v) for v in np.asarray(stats).ravel()[:2])
    return np.nan_to_num((data.astype(np.float32) - mean) / std)


def _cam(net: nn.Module, layer: nn.Module, batch: torch.Tensor, class_index: int) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    with _HOOK_LOCK:  # captum's hooks would see any other forward pass through the layer
        with torch.no_grad():
            assigned = net(batch).argmax(1) == class_index  # (B, *spatial)
        empty = ~assigned.flatten(1).any(1)
        assigned[empty] = True

        def score(x: torch.Tensor) -> torch.Tensor:
            logits = net(x)[:, class_index]
            return (logits * assigned).flatten(1).sum(1)

        with torch.enable_grad():
            cam = LayerGradCam(score, layer).attribute(batch, relu_attributions=True)
    mode = "bilinear" if batch.ndim == 4 else "trilinear"
    up = LayerAttribution.interpolate(cam, tuple(batch.shape[2:]), interpolate_mode=mode)
    return up[:, 0].detach().cpu().numpy().astype(np.float32)


def _slices_cam(
    net: nn.Module, layer: nn.Module, data: np.ndarray, z: Sequence[int], class_index: int,
    context: int, batch_size: int,
) -> np.ndarray:  # fmt: skip
    half = context // 2
    out = []
    for first in range(0, len(z), batch_size):
        stacks = []
        for k in z[first : first + batch_size]:
            idx = np.clip(np.arange(k - half, k + half + 1), 0, data.shape[0] - 1)
            stacks.append(data[idx])
        batch = torch.from_numpy(np.stack(stacks))
        out.append(_cam(net, layer, batch, class_index))
    return np.concatenate(out)


def gradcam(
    net: nn.Module,
    volume: Any,
    class_index: int,
    *,
    layer: nn.Module | str | None = None,
    slices: Sequence[int] | None = None,
    lazy: bool = False,
    batch_size: int = 4,
) -> Any:
    """Grad-CAM heat map of ``class_index`` for ``net`` over ``volume``.

    Parameters
    ----------
    net : torch.nn.Module
        A trained network of :mod:`xctdask.models` (2-D, 2.5-D or 3-D) returning
        class logits; it runs on the CPU in eval mode.
    volume : array-like (z, y, x)
        The scan, in its own grey values (normalised with ``net.normalization``).
    class_index : int
    layer : module or str, optional
        Whose feature maps to weight; default the last decoder block.
    slices : sequence of int, optional
        z indices (2-D/2.5-D networks); default all.
    lazy : bool
        Return a Dask array over the whole volume (2-D/2.5-D networks), computed one
        chunk of z at a time; ``slices`` must then be None. (A network without
        ``normalization`` gets the volume's mean and std first: that pass computes.)

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, shape ``(len(slices), y, x)`` (or the volume's shape), ≥ 0.

    Examples
    --------
    >>> import numpy as np, xctdask as xd
    >>> net = xd.models.build("unet2d", 1, 2, depth=1, f0=4, context=3)
    >>> vol = np.random.default_rng(0).random((6, 16, 16), dtype=np.float32)
    >>> heat = gradcam(net, vol, 1, slices=[2, 3])
    >>> heat.shape, bool((heat >= 0).all())
    ((2, 16, 16), True)
    >>> gradcam(net, vol, 1, lazy=True).shape
    (6, 16, 16)
    """
    from xctdask.backend import unwrap
    from xctdask.models.base import as_network

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    network = as_network(net)
    n_classes = int(network.n_classes or 0)
    if n_classes and not 0 <= class_index < n_classes:
        raise ValueError(f"class_index {class_index} is not one of the {n_classes} classes")
    target_layer = _layer(net, layer)
    dims = int(network.spatial_dims)
    context = int(getattr(network, "context", 1) or 1)
    net = net.eval().cpu()
    data = unwrap(volume)
    if getattr(data, "ndim", 0) != 3:
        raise ValueError(f"the volume must be 3-D (z, y, x), got shape {np.shape(data)}")
    if lazy:
        if dims == 3:
            raise ValueError("lazy=True is for 2-D and 2.5-D networks; pass a sub-volume instead")
        if slices is not None:
            raise ValueError("lazy=True covers every slice: leave slices=None")
        return _lazy(net, target_layer, data, class_index, context, batch_size)
    array = _normalized(np.asarray(data), net)
    if dims == 3:
        if slices is not None:
            raise ValueError("a 3-D network takes the volume at once: crop it instead of slices=")
        return _cam(net, target_layer, torch.from_numpy(array)[None, None], class_index)[0]
    z = list(range(array.shape[0])) if slices is None else [int(k) for k in slices]
    bad = [k for k in z if not 0 <= k < array.shape[0]]
    if bad:
        raise ValueError(f"slices {bad} are outside the volume's {array.shape[0]} slices")
    return _slices_cam(net, target_layer, array, z, class_index, context, batch_size)


def _lazy(net, layer, data, class_index: int, context: int, batch_size: int):
    import dask.array as da

    from xctdask.backend import as_dask

    vol = as_dask(data)
    half = context // 2
    if getattr(net, "normalization", None) is None:  # computes: one pass for mean and std
        finite = da.where(da.isfinite(vol), vol, np.nan)
        mean, std = da.compute(da.nanmean(finite), da.nanstd(finite))
        net.normalization = (float(mean), float(max(std, 1e-12)))
    vol = vol.rechunk({0: max(half, vol.chunks[0][0]), 1: -1, 2: -1})
    padded = da.overlap.overlap(vol, depth={0: half, 1: 0, 2: 0}, boundary="nearest")

    def block(chunk: np.ndarray) -> np.ndarray:
        array = _normalized(chunk, net)
        inner = list(range(half, chunk.shape[0] - half))
        return _slices_cam(net, layer, array, inner, class_index, context, batch_size)

    return padded.map_blocks(block, chunks=vol.chunks, dtype=np.float32)
