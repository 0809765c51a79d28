"""How many annotated slices does a network need? (Modular U-Net paper, Fig. 6)

The paper computed "the learning curve of the 2D model (Fig. 6) logarithmically
reducing the size of the train dataset from 1024 z-slices until a single layer", the
training volume "sequentially reduced along the z-axis", and found that "only ten
annotated 2D slices are necessary" (Section 4.5). This study does the same on the
user's volume: it trains the 2.5D U-Net on 1, 2, 4, …, N annotated z-slices taken
contiguously from the middle of the training part (or evenly spaced with
``spacing="even"``), scores each on a held-out slab that no training slice touches,
and draws mean class-wise IoU against the number of slices with the per-class
values and the paper's ZeroOC and Bin-ZeroOC references (Table D.4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xctdask.studies.common import (
    RunSize,
    StudyData,
    StudyResult,
    check_values,
    fit_network,
    held_out,
    load_data,
    predict_labels,
    pyplot,
    resolve_size,
    scores,
    settings,
    steps_bar,
)

__all__ = ["annotated_slices", "run"]


def annotated_slices(n_train: int, count: int, spacing: str = "contiguous") -> np.ndarray:
    """Which z indices of a training part of ``n_train`` slices are annotated.

    Examples
    --------
    >>> annotated_slices(20, 4).tolist()
    [8, 9, 10, 11]
    >>> annotated_slices(20, 4, "even").tolist()
    [2, 7, 12, 17]
    """
    if not 1 <= count <= n_train:
        raise ValueError(f"cannot annotate {count} of {n_train} training slices")
    if spacing == "contiguous":
        first = (n_train - count) // 2
        return np.arange(first, first + count)
    if spacing == "even":
        step = n_train / count
        return np.floor(step * (np.arange(count) + 0.5)).astype(int)
    raise ValueError(f"spacing must be 'contiguous' or 'even', got {spacing!r}")


def _counts(n_train: int, counts: list[int] | None) -> list[int]:
    if counts is None:
        counts = [2**k for k in range(12) if 2**k < n_train] + [n_train]
    counts = check_values("slice counts", counts, low=1, integer=True)
    bad = [c for c in counts if c > n_train]
    if bad:
        raise ValueError(f"slice counts {bad} are not in 1..{n_train} (the training part)")
    return sorted(counts)


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    counts: list[int] | None = None,
    spacing: str = "contiguous",
    test_fraction: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Train on 1, 2, 4, …, N annotated slices; mean IoU on a held-out slab.

    Parameters
    ----------
    data : StudyData, optional
        Volume and true labels (:func:`~xctdask.studies.common.load_data`); default a
        phantom's LQ scan.
    size : {"tiny", "small", "medium"} or RunSize
    counts : list of int, optional
        Numbers of annotated slices; default powers of two up to the training part.
    spacing : {"contiguous", "even"}
        Contiguous slices as in the paper, or spread evenly over the training part.
    test_fraction : float
        The last fraction of z is the held-out slab; the context of a 2.5D network
        (its slices above and below) is kept out of it too.

    Examples
    --------
    >>> result = run(size="tiny", counts=[1, 2], progress=False)
    >>> [point["slices"] for point in result.numbers["points"]]
    [1, 2]
    """
    from xctdask.metrics import bin_zero_oc, zero_oc

    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("learning-curve")
    run_size = resolve_size(size, data)
    nz = data.image.shape[0]
    n_train, test = held_out(nz, test_fraction, run_size.context)
    counts = _counts(n_train, counts)
    k = data.n_classes
    points = []
    for count in steps_bar(counts, description="learning curve", progress=progress):
        sparse = np.full_like(truth, 255)
        chosen = annotated_slices(n_train, count, spacing)
        sparse[chosen] = truth[chosen]
        net, _ = fit_network(data.image, sparse, k, run_size, seed=seed, progress=False)
        pred = predict_labels(net, data.image)[test]
        points.append({"slices": count, "z": chosen.tolist(), **scores(pred, truth[test], k)})
    image_test, truth_test = data.image[test], truth[test]
    baselines = {
        "zero_oc": zero_oc(image_test, truth_test, k),
        "bin_zero_oc": bin_zero_oc(image_test, truth_test, k),
    }
    numbers: dict[str, Any] = {
        "data": data.source,
        "class_names": data.class_names,
        "settings": settings(run_size, spacing=spacing, test_slices=[test.start, nz]),
        "points": points,
        "baselines": {
            name: {"mean_iou": b.mean_iou, "iou": b.iou.tolist()} for name, b in baselines.items()
        },
    }
    fig = _figure(points, numbers["baselines"], data.class_names, spacing)
    lines = [f"learning curve on {data.source}, test slab z {test.start}–{nz - 1}"]
    lines += [f"{'slices':>6}  mIoU   " + "  ".join(f"{n[:8]:>8}" for n in data.class_names)]
    for p in points:
        per = "  ".join("     n/a" if v is None else f"{v:8.3f}" for v in p["iou"])
        lines.append(f"{p['slices']:>6}  {p['mean_iou']:.3f}  {per}")
    for name, b in numbers["baselines"].items():
        lines.append(f"{name:>10}  {b['mean_iou']:.3f}  (from the test slab's own labels)")
    return StudyResult("learning-curve", numbers, "\n".join(lines), {"miou": fig})


def _figure(points: list[dict], baselines: dict, class_names: list[str], spacing: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [p["slices"] for p in points]
    ax.plot(x, [p["mean_iou"] for p in points], "o-", color="black", lw=2, label="mean IoU")
    for c, name in enumerate(class_names):
        values = [np.nan if p["iou"][c] is None else p["iou"][c] for p in points]
        ax.plot(x, values, ".--", lw=1, label=f"IoU {name}")
    styles = {"zero_oc": ("ZeroOC", ":"), "bin_zero_oc": ("Bin-ZeroOC", "-.")}
    for key, (label, style) in styles.items():
        ax.axhline(baselines[key]["mean_iou"], color="grey", ls=style, label=f"{label} (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"annotated z-slices ({spacing})")
    ax.set_ylabel("IoU on the held-out slab")
    ax.set_ylim(0, 1)
    ax.set_title("Learning curve (Modular U-Net paper, Fig. 6)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
