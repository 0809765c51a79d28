"""Slice montages with label overlays."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from xctdask.backend import to_host, unwrap

__all__ = ["montage"]


def _slice(data: Any, axis: int, index: int) -> np.ndarray:
    data = unwrap(data)
    key = [slice(None)] * 3
    key[axis] = index
    part = data[tuple(key)]
    if hasattr(part, "compute"):
        part = part.compute()
    return to_host(part)


def montage(
    image: Any,
    *overlays: Any,
    titles: tuple[str, ...] | None = None,
    slices: int | tuple[int, ...] = 3,
    axis: int = 0,
    alpha: float = 0.45,
    path: str | os.PathLike | None = None,
    cmap: str = "tab10",
    class_names: list[str] | tuple[str, ...] | None = None,
):
    """A grid of slices: the image alone, then the image under each label overlay.

    Rows are slices along ``axis``; columns are the image and each overlay. Only the
    slices shown are read (lazy volumes stay lazy elsewhere). Voxels labelled 255
    (unlabelled) are not coloured.

    Parameters
    ----------
    image : array (z, y, x)
    *overlays : label arrays of the same shape
    titles : column titles (image first)
    slices : int or tuple of int
        How many evenly spaced slices, or which ones.
    path : optional
        Also write the figure there (PNG, 120 dpi).
    class_names : list of str, optional
        Names of labels 0, 1, ...: a legend of their colours under the figure (default:
        "class 0", "class 1", ... up to the largest label shown).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).normal(size=(8, 16, 16))
    >>> fig = montage(img, (img > 0).astype(np.uint8), slices=2)
    >>> len(fig.axes)
    4
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shape = unwrap(image).shape
    if len(shape) != 3:
        raise ValueError(f"montage needs a 3-D image, got shape {tuple(shape)}")
    for o in overlays:
        if unwrap(o).shape != shape:
            raise ValueError(f"overlay shape {tuple(unwrap(o).shape)} != image shape {shape}")
    n = shape[axis]
    index = (
        np.linspace(0, n - 1, slices + 2)[1:-1].round().astype(int)
        if isinstance(slices, int)
        else np.asarray(slices, dtype=int)
    )
    columns = 1 + len(overlays)
    titles = titles or ("image", *(f"labels {i + 1}" for i in range(len(overlays))))
    if len(titles) != columns:
        raise ValueError(f"{len(titles)} titles for {columns} columns")
    fig, axes = plt.subplots(
        len(index), columns, figsize=(3 * columns, 3 * len(index)), squeeze=False
    )
    colours = plt.get_cmap(cmap)
    shown = 0
    for row, k in enumerate(index):
        img = _slice(image, axis, int(k)).astype(np.float32)
        finite = img[np.isfinite(img)]
        lo, hi = np.percentile(finite, (0.5, 99.5)) if finite.size else (0, 1)
        for col in range(columns):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            if col:
                labels = _slice(overlays[col - 1], axis, int(k))
                present = labels[labels != 255]
                shown = max(shown, int(present.max()) + 1 if present.size else 0)
                rgba = colours(labels % colours.N)
                rgba[..., 3] = np.where(labels == 255, 0.0, alpha)
                ax.imshow(rgba)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{'zyx'[axis]} = {int(k)}")
    if overlays and (class_names or shown):  # no legend for overlays with no labelled voxel
        from matplotlib.patches import Patch

        names = list(class_names) if class_names else [f"class {c}" for c in range(shown)]
        handles = [
            Patch(color=colours(c % colours.N), alpha=max(alpha, 0.6), label=f"{c}: {name}")
            for c, name in enumerate(names)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
