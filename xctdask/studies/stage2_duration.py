"""How long should stage 2 train? (SR-CT self-correction paper, Table IV)

The paper compared "the different stopping points in stage 2", reporting the stage-2
model's pixel accuracy, mIoU and "model confidence given the role it plays in stage
3", and the mIoU of stage 3 started from each: stage 2 improved with training while
"stage 3 shows a steady decline in mIoU as models are trained longer in stage 2"
(54.41 from epoch 200 down to 37.91 from epoch 900). This study keeps snapshots of
stage 2 every ``steps / snapshots`` steps (``FitConfig.snapshot_every``), runs stage 3
(:func:`xctdask.self_correct`) from each, and reports per snapshot: stage-2 accuracy,
mIoU and mean confidence, and stage-3 mIoU, with the per-class IoU next to each mean.
Unsupervised classes are matched to the true ones by the Hungarian algorithm.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from xctdask.studies.common import (
    RunSize,
    StudyData,
    StudyResult,
    fit_network,
    load_data,
    matched_scores,
    predict_labels,
    pseudo_labels_of,
    pyplot,
    resolve_size,
    settings,
    steps_bar,
)

__all__ = ["run"]


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    snapshots: int = 5,
    pseudo_method: str = "kmeans",
    threshold: float = 0.9,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Stage-2 snapshots and the stage 3 run from each; scores of both.

    Examples
    --------
    >>> result = run(size="tiny", snapshots=2, progress=False)
    >>> [p["stage2_step"] for p in result.numbers["points"]]
    [1, 2]
    """
    from xctdask.selfcorrect import self_correct

    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("stage2-duration")
    run_size = resolve_size(size, data)
    if not isinstance(snapshots, (int, np.integer)) or not 1 <= snapshots <= run_size.steps:
        raise ValueError(
            f"snapshots must be a whole number in 1..{run_size.steps} (the stage-2 steps), "
            f"got {snapshots!r}"
        )
    every = run_size.steps // snapshots
    k = data.n_classes
    target, _ = pseudo_labels_of(data.image, k, pseudo_method)
    pseudo = matched_scores(target, truth, k, k)
    net, sampler = fit_network(
        data.image,
        target,
        k,
        run_size,
        seed=seed,
        progress=progress,
        snapshot_every=every,
        keep_best=False,
    )
    points: list[dict[str, Any]] = []
    kept = net.history.snapshots[:snapshots]
    for step, state in steps_bar(kept, description="stage 3 per snapshot", progress=progress):
        stage2 = copy.deepcopy(net)
        stage2.load_state_dict(state)
        labels2 = predict_labels(stage2, data.image)
        confidence = predict_labels(stage2, data.image, output="confidence")
        teacher = self_correct(
            copy.deepcopy(stage2),
            sampler,
            steps=run_size.steps_self_correct,
            threshold=threshold,
            batch_size=run_size.batch_size,
            seed=seed,
            progress=False,
        )
        labels3 = predict_labels(teacher, data.image)
        points.append(
            {
                "stage2_step": int(step),
                "stage2": matched_scores(labels2, truth, k, k),
                "stage2_confidence": float(np.nanmean(confidence)),
                "stage3": matched_scores(labels3, truth, k, k),
            }
        )
    numbers = {
        "data": data.source,
        "class_names": data.class_names,
        "settings": settings(run_size, snapshot_every=every, threshold=threshold),
        "pseudo_labels": pseudo,
        "points": points,
    }
    lines = [
        f"stage-2 duration on {data.source}; pseudo labels mIoU {pseudo['mean_iou']:.3f}",
        f"{'step':>6}  {'acc 2':>6}  {'mIoU 2':>6}  {'conf 2':>6}  {'mIoU 3':>6}   IoU 3 per class",
    ]
    for p in points:
        per = " ".join("  n/a" if v is None else f"{v:.3f}" for v in p["stage3"]["iou"])
        lines.append(
            f"{p['stage2_step']:>6}  {p['stage2']['accuracy']:6.3f}  "
            f"{p['stage2']['mean_iou']:6.3f}  {p['stage2_confidence']:6.3f}  "
            f"{p['stage3']['mean_iou']:6.3f}   {per}"
        )
    return StudyResult("stage2-duration", numbers, "\n".join(lines), {"miou": _figure(numbers)})


def _figure(numbers: dict):
    plt = pyplot()
    points = numbers["points"]
    steps = [p["stage2_step"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(steps, [p["stage2"]["mean_iou"] for p in points], "o-", label="stage 2 mIoU")
    ax.plot(steps, [p["stage2_confidence"] for p in points], "s--", label="stage 2 confidence")
    ax.plot(steps, [p["stage3"]["mean_iou"] for p in points], "o-", lw=2, label="stage 3 mIoU")
    ax.axhline(
        numbers["pseudo_labels"]["mean_iou"], color="grey", ls=":", label="pseudo labels mIoU"
    )
    ax.set_xlabel("stage-2 training steps before stage 3")
    ax.set_ylabel("mIoU (Hungarian-matched) / mean confidence")
    ax.set_ylim(0, 1)
    ax.set_title("Stopping points of stage 2 (SR-CT paper, Table IV)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
