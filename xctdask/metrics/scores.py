"""Segmentation scores derived from the confusion matrix.

Every function takes ``(pred, truth, n_classes)`` and is lazy on Dask input (it
returns a Dask array or scalar); ``classification_report`` computes. A class absent
from both prediction and truth has an undefined score (NaN) and is left out of means.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xctdask.backend import UNLABELLED
from xctdask.metrics.confusion import confusion_matrix

__all__ = [
    "check_class_names",
    "classification_report",
    "dice",
    "iou",
    "mean_iou",
    "pixel_accuracy",
    "precision_recall_f1",
]


def _ratio(num: Any, den: Any) -> Any:
    den = den.astype(np.float64)
    return num / np.where(den == 0, np.nan, den)


def _parts(cm: Any) -> tuple[Any, Any, Any]:
    tp = np.diagonal(cm)
    return tp, cm.sum(axis=1), cm.sum(axis=0)  # true positives, truth count, predicted count


def iou(pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED) -> Any:
    """Per-class intersection over union (Jaccard index), shape ``(n_classes,)``.

    Examples
    --------
    >>> import numpy as np
    >>> iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    array([0.5       , 0.66666667])
    """
    tp, support, predicted = _parts(
        confusion_matrix(pred, truth, n_classes, ignore_index=ignore_index)
    )
    return _ratio(tp, support + predicted - tp)


def mean_iou(
    pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED
) -> Any:
    """Mean of the per-class IoU over classes present in prediction or truth.

    Examples
    --------
    >>> import numpy as np
    >>> float(mean_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2))
    0.5833333333333333
    """
    return np.nanmean(iou(pred, truth, n_classes, ignore_index=ignore_index))


def dice(pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED) -> Any:
    """Per-class Dice coefficient (F1 score), ``2·TP / (|truth| + |pred|)``."""
    tp, support, predicted = _parts(
        confusion_matrix(pred, truth, n_classes, ignore_index=ignore_index)
    )
    return _ratio(2 * tp, support + predicted)


def pixel_accuracy(
    pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED
) -> Any:
    """Fraction of labelled voxels whose predicted class is right."""
    cm = confusion_matrix(pred, truth, n_classes, ignore_index=ignore_index)
    return _ratio(np.trace(cm), cm.sum())


def precision_recall_f1(
    pred: Any, truth: Any, n_classes: int, *, ignore_index: int | None = UNLABELLED
) -> tuple[Any, Any, Any]:
    """Per-class precision, recall and F1, each of shape ``(n_classes,)``."""
    tp, support, predicted = _parts(
        confusion_matrix(pred, truth, n_classes, ignore_index=ignore_index)
    )
    return _ratio(tp, predicted), _ratio(tp, support), _ratio(2 * tp, support + predicted)


def check_class_names(
    class_names: Any, n_classes: int, *, reserved: tuple[str, ...] = ()
) -> list[str]:
    """One name per class, all different (tables are keyed by name: a repeat would
    drop a class's row), none of the ``reserved`` row names; ``None`` gives
    ``"0"``, ``"1"``, ….

    Examples
    --------
    >>> check_class_names(None, 2)
    ['0', '1']
    >>> check_class_names(["pore", "pore"], 2)
    Traceback (most recent call last):
    ...
    ValueError: class names must differ; pore repeated in ['pore', 'pore']
    """
    names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} classes")
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"class names must be strings, got {names}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"class names must differ; {', '.join(repeated)} repeated in {names}")
    taken = sorted(set(names) & set(reserved))
    if taken:
        raise ValueError(
            f"{', '.join(taken)} cannot name a class here: the table has a row of that name"
        )
    return names


def classification_report(
    pred: Any,
    truth: Any,
    n_classes: int,
    *,
    class_names: list[str] | None = None,
    ignore_index: int | None = UNLABELLED,
    as_dict: bool = False,
) -> str | dict[str, Any]:
    """Per-class precision, recall, F1, IoU and support, with means; computes.

    Returns a text table, or with ``as_dict=True`` a dict keyed by class name plus
    ``"mean"`` (macro averages over present classes), ``"accuracy"`` and ``"mean_iou"``.

    Examples
    --------
    >>> import numpy as np
    >>> print(classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), 2))
    class        precision   recall       f1      iou  support
    0                1.000    0.500    0.667    0.500        2
    1                0.500    1.000    0.667    0.500        1
    mean             0.750    0.750    0.667    0.500        3
    accuracy: 0.667   mean IoU: 0.500
    """
    import dask

    names = check_class_names(class_names, n_classes, reserved=("mean", "accuracy", "mean_iou"))
    cm = confusion_matrix(pred, truth, n_classes, ignore_index=ignore_index)
    (cm,) = dask.compute(cm)
    tp, support, predicted = _parts(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        f1, jac = _ratio(2 * tp, support + predicted), _ratio(tp, support + predicted - tp)
    rows = {
        name: {
            "precision": precision[i],
            "recall": recall[i],
            "f1": f1[i],
            "iou": jac[i],
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    means = {
        k: float(np.nanmean([r[k] for r in rows.values()]))
        for k in ("precision", "recall", "f1", "iou")
    }
    report = {
        **rows,
        "mean": {**means, "support": int(support.sum())},
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "mean_iou": means["iou"],
    }
    if as_dict:
        return report
    width = max(12, *(len(n) + 1 for n in names))
    lines = [f"{'class':<{width}} precision   recall       f1      iou  support"]
    for name in [*names, "mean"]:
        r = report[name]
        lines.append(
            f"{name:<{width}} {r['precision']:9.3f} {r['recall']:8.3f} "
            f"{r['f1']:8.3f} {r['iou']:8.3f} {r['support']:8d}"
        )
    lines.append(f"accuracy: {report['accuracy']:.3f}   mean IoU: {report['mean_iou']:.3f}")
    return "\n".join(lines)
