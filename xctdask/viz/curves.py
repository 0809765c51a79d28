"""Training curves of :func:`xctdask.train` and :func:`xctdask.self_correct`."""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

__all__ = ["training_curves"]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _as_dict(history: Any) -> dict[str, Any]:
    if hasattr(history, "history") and not isinstance(history, dict):
        history = history.history  # a trained network
    if is_dataclass(history):
        return asdict(history)
    if isinstance(history, dict):
        return history
    raise TypeError(
        "history must be a History, a network with .history, or a dict; got "
        f"{type(history).__name__}"
    )


def training_curves(
    *histories: Any,
    labels: tuple[str, ...] | None = None,
    path: str | os.PathLike | None = None,
    smooth: int = 10,
):
    """Plot loss, validation mIoU (and PSNR), and the teacher's confidence if logged.

    Several histories (stage 2 then stage 3, say) are drawn one after the other on a
    common step axis, each in its own colour.

    Parameters
    ----------
    *histories : History, network with ``history``, or dict
        From :func:`xctdask.train` / :func:`xctdask.self_correct`.
    labels : tuple of str, optional
        Legend entries, one per history.
    path : path, optional
        Also write the figure there (PNG at 120 dpi).
    smooth : int
        Moving-average window for the per-step loss.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = training_curves({"step": [0, 1], "loss": [1.0, 0.5], "val_step": [2],
    ...                        "val_miou": [0.7]})
    >>> [ax.get_title() for ax in fig.axes]
    ['training loss', 'validation mIoU']
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not histories:
        raise ValueError("training_curves needs at least one history")
    records = [_as_dict(h) for h in histories]
    labels = labels or tuple(f"run {i + 1}" for i in range(len(records)))
    if len(labels) != len(records):
        raise ValueError(f"{len(labels)} labels for {len(records)} histories")
    panels = ["loss"]
    if any(r.get("val_miou") for r in records):
        panels.append("val_miou")
    if any(r.get("val_psnr") for r in records):
        panels.append("val_psnr")
    if any(r.get("mean_confidence") for r in records):
        panels.append("confidence")
    against = sorted({r.get("validated_against") for r in records if r.get("validated_against")})
    titles = {
        "loss": "training loss",
        "val_miou": "validation mIoU" + (f" vs {' / '.join(against)}" if against else ""),
        "val_psnr": "validation PSNR (dB)",
        "confidence": "teacher: mean confidence / masked fraction",
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    offset = 0
    for record, label in zip(records, labels, strict=True):
        steps = np.asarray(record.get("step", []), dtype=float) + offset
        for ax, panel in zip(axes[0], panels, strict=True):
            if panel == "loss" and len(steps):
                loss = _smooth(np.asarray(record["loss"], dtype=float), smooth)
                ax.plot(steps[len(steps) - len(loss) :], loss, label=label)
            elif panel in ("val_miou", "val_psnr") and record.get(panel):
                ax.plot(np.asarray(record["val_step"]) + offset, record[panel], "o-", label=label)
            elif panel == "confidence" and record.get("mean_confidence"):
                ax.plot(
                    steps,
                    _smooth(np.asarray(record["mean_confidence"]), 1),
                    label=f"{label}: confidence",
                )
                ax.plot(steps, record["masked_fraction"], "--", label=f"{label}: masked")
        if len(steps):
            offset = steps[-1] + 1
    for ax, panel in zip(axes[0], panels, strict=True):
        ax.set_title(titles[panel], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(records) > 1 or panel == "confidence":
            ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
