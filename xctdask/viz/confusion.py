"""Confusion-matrix plot."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["confusion"]


def confusion(
    matrix: np.ndarray,
    *,
    class_names: list[str] | None = None,
    normalize: bool = True,
    path: str | os.PathLike | None = None,
):
    """Plot a confusion matrix (rows: truth, columns: prediction), row-normalised.

    Takes the matrix of :func:`xctdask.metrics.confusion_matrix` (compute it first).

    Examples
    --------
    >>> import numpy as np
    >>> fig = confusion(np.array([[8, 2], [1, 9]]), class_names=["air", "solid"])
    >>> fig.axes[0].get_ylabel()
    'truth'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {matrix.shape}")
    n = matrix.shape[0]
    names = class_names or [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for {n} classes")
    shown = matrix / np.maximum(matrix.sum(1, keepdims=True), 1) if normalize else matrix
    fig, ax = plt.subplots(figsize=(1.2 * n + 2, 1.2 * n + 1.5))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(shown[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="white" if shown[i, j] > 0.6 * shown.max() else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
