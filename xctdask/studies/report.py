"""The classification report of the Modular U-Net paper (Table D.5, Figs. D.10, A.8).

Table D.5 lists per class "accuracy, precision, recall, f1, jaccard, support" with
"macro avg." and "micro avg." rows; Fig. D.10 shows confusion matrices "normalized in
three different ways": by all cells, by row ("the diagonal corresponds to the recall
values") and by column (the precision); Fig. A.8 shows "a normalized gray level
histogram per class", normalised "relative to all the classes confounded".

:func:`classification_table` computes all of it for any two label volumes (Dask or
NumPy, one pass over the data for the confusion matrix and one for the histogram).
Per-class accuracy is one-vs-rest, ``(TP + TN) / N``, as in the paper's table; the
micro averages pool every class's counts, so the micro accuracy, precision, recall
and F1 all equal the overall accuracy (the paper's micro row reads 99.0 in each).
``xctdask report PRED TRUTH`` runs it from the command line; ``xctdask study report``
trains a small network on a phantom and reports on its held-out slab.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xctdask.studies.common import (
    RunSize,
    StudyData,
    StudyResult,
    fit_network,
    held_out,
    load_data,
    predict_labels,
    pyplot,
    resolve_size,
    settings,
)

__all__ = ["classification_table", "report", "run"]


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def classification_table(cm: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Table D.5 from a confusion matrix (rows truth, columns prediction).

    Examples
    --------
    >>> t = classification_table(np.array([[3, 1], [0, 4]]), ["a", "b"])
    >>> round(t["classes"]["a"]["recall"], 2), round(t["micro"]["f1"], 3)
    (0.75, 0.875)
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(float)
    support, predicted, total = cm.sum(1), cm.sum(0), cm.sum()
    fp, fn = predicted - tp, support - tp
    tn = total - tp - fp - fn
    columns = {
        "accuracy": _safe(tp + tn, np.full_like(tp, total)),
        "precision": _safe(tp, predicted),
        "recall": _safe(tp, support),
        "f1": _safe(2 * tp, support + predicted),
        "jaccard": _safe(tp, support + predicted - tp),
    }
    classes = {
        name: {key: _num(col[i]) for key, col in columns.items()} | {"support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    present = support > 0
    macro = {key: _num(np.nanmean(col[present])) for key, col in columns.items()}
    pooled = tp.sum() / max(total, 1)
    micro = {
        "accuracy": _num(pooled),
        "precision": _num(pooled),
        "recall": _num(pooled),
        "f1": _num(pooled),
        "jaccard": _num(tp.sum() / max((support + predicted - tp).sum(), 1)),
    }
    return {"classes": classes, "macro": macro, "micro": micro, "support": int(total)}


def _num(value: Any) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value


def report(
    pred: Any,
    truth: Any,
    n_classes: int,
    *,
    image: Any = None,
    class_names: list[str] | None = None,
    bins: int | None = None,
) -> StudyResult:
    """The full report of ``pred`` against ``truth`` (**computes**).

    Parameters
    ----------
    pred, truth : label volumes (NumPy, Dask or DataArray), 255 in ``truth`` = unlabelled
    n_classes : int
    image : array, optional
        The scan, for the class-wise gray-value histograms (Fig. A.8).
    class_names : list of str, optional
    bins : int, optional
        Histogram bins (default: exact 8/16-bit values, 256 for floats).

    Examples
    --------
    >>> truth = np.array([[[0, 0, 1, 1]]], np.uint8)
    >>> result = report(np.array([[[0, 1, 1, 1]]], np.uint8), truth, 2)
    >>> result.numbers["table"]["classes"]["0"]["recall"], sorted(result.figures)
    (0.5, ['confusion'])
    """
    import dask

    from xctdask.backend import check_same_shape
    from xctdask.metrics import confusion_matrix, joint_histogram
    from xctdask.metrics.scores import check_class_names

    check_same_shape(pred, truth)
    names = check_class_names(class_names, n_classes)
    (cm,) = dask.compute(confusion_matrix(pred, truth, n_classes))
    cm = np.asarray(cm)
    table = classification_table(cm, names)
    numbers: dict[str, Any] = {
        "class_names": names,
        "table": table,
        "confusion": cm.tolist(),
        "confusion_by_all": cm / max(cm.sum(), 1),
        "confusion_by_row": _safe(cm, cm.sum(1, keepdims=True)),
        "confusion_by_column": _safe(cm, cm.sum(0, keepdims=True)),
    }
    figures = {"confusion": _confusions(cm, names)}
    if image is not None:
        hist = joint_histogram(image, truth, n_classes, bins=bins)
        numbers["histogram"] = {
            "counts": hist.tolist(),
            "normalised_over_all_classes": hist / max(hist.sum(), 1),
        }
        figures["histogram"] = _histogram(hist, names)
    return StudyResult("report", numbers, format_table(table), figures)


def format_table(table: dict[str, Any]) -> str:
    """Table D.5 as text (percentages)."""
    keys = ("accuracy", "precision", "recall", "f1", "jaccard")
    head = f"{'class':<14}" + "".join(f"{k:>10}" for k in keys) + f"{'support':>12}"
    lines = [head]

    def pct(v: float | None) -> str:
        return f"{'-':>10}" if v is None else f"{100 * v:10.1f}"

    for name, row in table["classes"].items():
        lines.append(
            f"{name[:14]:<14}" + "".join(pct(row[k]) for k in keys) + f"{row['support']:>12}"
        )
    for avg in ("macro", "micro"):
        lines.append(
            f"{avg + ' avg.':<14}" + "".join(pct(table[avg][k]) for k in keys) + f"{'-':>12}"
        )
    return "\n".join(lines)


def _confusions(cm: np.ndarray, names: list[str]):
    from xctdask.viz.confusion import normalized

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(4.0 * 3, 3.9))
    titles = {
        "all": "by all cells (%)",
        "row": "by row: recall (%)",
        "column": "by column: precision (%)",
    }
    for ax, how in zip(axes, ("all", "row", "column"), strict=True):
        shown = 100 * normalized(cm, how)
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=100)
        for i in range(shown.shape[0]):
            for j in range(shown.shape[1]):
                ax.text(j, i, f"{shown[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 60 else "black")  # fmt: skip
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("prediction")
        ax.set_ylabel("truth")
        ax.set_title(titles[how], fontsize=10)
    fig.suptitle("Confusion matrices (Modular U-Net paper, Fig. D.10)")
    fig.tight_layout()
    return fig


def _histogram(hist: np.ndarray, names: list[str]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    share = hist / max(hist.sum(), 1)
    x = np.arange(hist.shape[1])
    for c, name in enumerate(names):
        ax.plot(x, 100 * share[c], label=name)
    ax.set_xlabel("gray-value bin")
    ax.set_ylabel("voxels (% of all classes)")
    ax.set_title("Class-wise gray-value histograms (Modular U-Net paper, Fig. A.8)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    test_fraction: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Train the 2.5D U-Net on the annotated first part of z; report on the rest.

    Examples
    --------
    >>> result = run(size="tiny", progress=False)
    >>> sorted(result.numbers["table"])
    ['classes', 'macro', 'micro', 'support']
    """
    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("report")
    run_size = resolve_size(size, data)
    nz = data.image.shape[0]
    n_train, test = held_out(nz, test_fraction, run_size.context)
    sparse = np.full_like(truth, 255)
    sparse[:n_train] = truth[:n_train]
    net, _ = fit_network(data.image, sparse, data.n_classes, run_size, seed=seed, progress=progress)
    pred = predict_labels(net, data.image)[test]
    result = report(
        pred, truth[test], data.n_classes, image=data.image[test], class_names=data.class_names
    )
    result.numbers = {
        "data": data.source,
        "settings": settings(run_size, test_slices=[test.start, nz]),
    } | result.numbers
    result.summary = (
        f"report on {data.source}, test slab z {test.start}–{nz - 1}\n" + result.summary
    )
    return result
