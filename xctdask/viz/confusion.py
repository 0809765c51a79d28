"""Confusion-matrix plot, square or not."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["confusion", "normalized"]

NORMALIZATIONS = ("row", "column", "all", "none")


def normalized(matrix: np.ndarray, how: str | bool = "row") -> np.ndarray:
    """``matrix`` divided by its row sums, column sums or total (``"none"``: as is).

    The Modular U-Net paper shows all three (Fig. D.10): by row, each true class's
    recall spread; by column, each prediction's precision spread; by all cells, the
    joint distribution. Empty rows or columns stay 0.

    Examples
    --------
    >>> normalized(np.array([[3, 1], [0, 4]]), "column").round(2).tolist()
    [[1.0, 0.2], [0.0, 0.8]]
    """
    how = {True: "row", False: "none"}.get(how, how)
    matrix = np.asarray(matrix, dtype=float)
    if how == "row":
        return matrix / np.maximum(matrix.sum(1, keepdims=True), 1e-300)
    if how == "column":
        return matrix / np.maximum(matrix.sum(0, keepdims=True), 1e-300)
    if how == "all":
        return matrix / max(matrix.sum(), 1e-300)
    if how == "none":
        return matrix
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {how!r}")


def confusion(
    matrix: np.ndarray,
    *,
    class_names: list[str] | None = None,
    column_names: list[str] | None = None,
    normalize: str | bool = "row",
    xlabel: str = "prediction",
    ylabel: str = "truth",
    title: str | None = None,
    path: str | os.PathLike | None = None,
):
    """Plot a contingency matrix (rows: ``ylabel``, columns: ``xlabel``).

    Takes the matrix of :func:`xctdask.metrics.confusion_matrix` (compute it first),
    or any non-square one, such as pseudo clusters (rows) against the classes they
    ended in (columns). ``class_names`` name the rows, ``column_names`` the columns
    (default: the row names when square, else the column index).

    Examples
    --------
    >>> import numpy as np
    >>> fig = confusion(np.array([[8, 2], [1, 9]]), class_names=["air", "solid"])
    >>> fig.axes[0].get_ylabel()
    'truth'
    >>> fig = confusion(np.ones((4, 3)), normalize="all", ylabel="cluster K", xlabel="class C")
    >>> fig.axes[0].get_images()[0].get_array().shape
    (4, 3)
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"a confusion matrix is 2-D, got shape {matrix.shape}")
    rows, cols = matrix.shape
    names = class_names or [str(i) for i in range(rows)]
    if len(names) != rows:
        raise ValueError(f"{len(names)} class names for {rows} rows")
    if column_names is None:
        column_names = names if rows == cols else [str(j) for j in range(cols)]
    if len(column_names) != cols:
        raise ValueError(f"{len(column_names)} column names for {cols} columns")
    how = {True: "row", False: "none"}.get(normalize, normalize)
    shown = normalized(matrix, how)
    scale = 1.0 if how in ("row", "column") else None  # by all cells: up to the largest
    fig, ax = plt.subplots(figsize=(0.9 * cols + 2.4, 0.8 * rows + 1.8))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=scale, aspect="auto")
    top = shown.max() if shown.size else 1.0
    for i in range(rows):
        for j in range(cols):
            text = f"{shown[i, j]:.2f}" if how != "none" else f"{int(shown[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > 0.6 * top else "black",
            )
    ax.set_xticks(range(cols), column_names, rotation=45, ha="right")
    ax.set_yticks(range(rows), names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    where = {"row": "by row", "column": "by column", "all": "by all cells", "none": "counts"}
    ax.set_title(title or f"normalised {where[how]}" if how != "none" else title or "counts")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
