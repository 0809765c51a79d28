"""The intensity histogram with a fitted labeler's thresholds."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["histogram"]


def histogram(labeler: Any, *, path: str | os.PathLike | None = None, log: bool = True):
    """Plot the histogram a :class:`xctdask.PseudoLabeler` fitted on, its class centres
    and its thresholds (decision intervals for GMM).

    Needs nothing but the fitted labeler: the histogram is stored on it.

    Examples
    --------
    >>> import numpy as np, xctdask as xd
    >>> vol = np.random.default_rng(0).normal(size=(4, 32, 32)).astype(np.float32)
    >>> fig = histogram(xd.PseudoLabeler(2).fit(vol))
    >>> fig.axes[0].get_xlabel()
    'intensity'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from xctdask.pseudolabels import PseudoLabeler

    if not isinstance(labeler, PseudoLabeler):
        raise TypeError(
            f"histogram plots a fitted PseudoLabeler, got {type(labeler).__name__}: "
            "for a volume, plot histogram(xd.PseudoLabeler(n_classes).fit(volume))"
        )
    hist = getattr(labeler, "histogram_", None)
    if hist is None:
        raise ValueError("the labeler is not fitted (no histogram_): call fit() first")
    edges = np.asarray(hist.edges, dtype=float)
    counts = np.asarray(hist.counts, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.stairs(counts, edges, fill=True, alpha=0.6, color="0.4")
    if log:
        ax.set_yscale("log")
    thresholds = getattr(labeler, "thresholds_", None)
    for t in [] if thresholds is None else np.ravel(thresholds):
        ax.axvline(float(t), color="C3", lw=1.2)
    for i, c in enumerate(np.ravel(getattr(labeler, "centers_", []))):
        ax.axvline(float(c), color=f"C{i % 10}", ls="--", lw=1, label=f"class {i}")
    ax.set_xlabel("intensity")
    ax.set_ylabel("voxels")
    ax.set_title(f"{labeler.method}: thresholds (solid), centres (dashed)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
