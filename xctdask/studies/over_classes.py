"""More pseudo classes than phases (SR-CT self-correction paper, Figs. 9–10).

The paper set the number of stage-1 clusters "to just one above optimal" and "to 10,
representing an extreme case", and showed (Figs. 9b, 10b) "a confusion matrix where
each cell represents the number of pixels that started in cluster K and ended in class
C": self-correction "merges these redundant clusters into three semantically coherent
classes", and some classes end empty. This study runs stages 1–3 with K clusters for
each K given (default: true + 1 and 10) and reports

- the K→C matrix of voxels that started in pseudo cluster K and ended in stage-3
  class C (the paper's figure; background included),
- the matrix of stage-3 classes against the true phases (not square), and
- mIoU of the pseudo labels, stage 2 and stage 3 after mapping each cluster or class
  to a true phase (Hungarian, then the majority phase for those left over), with the
  per-class IoU and the classes stage 3 left empty.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from xctdask.studies.common import (
    RunSize,
    StudyData,
    StudyResult,
    check_values,
    fit_network,
    load_data,
    matched_scores,
    predict_labels,
    pseudo_labels_of,
    resolve_size,
    settings,
    steps_bar,
)

__all__ = ["run"]


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    clusters: tuple[int, ...] | None = None,
    pseudo_method: str = "kmeans",
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Stages 1–3 with more clusters than phases; where each cluster ended.

    Examples
    --------
    >>> result = run(size="tiny", clusters=(4,), progress=False)
    >>> run4 = result.numbers["runs"][0]
    >>> len(run4["cluster_to_class"]), len(run4["class_to_truth"][0])
    (4, 3)
    """
    from xctdask.metrics import contingency
    from xctdask.selfcorrect import self_correct
    from xctdask.viz import confusion

    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("over-classes")
    c = data.n_classes
    if clusters is None:
        clusters = (c + 1, 10)
    clusters = tuple(check_values("cluster counts", clusters, low=2, high=254, integer=True))
    run_size = resolve_size(size, data)
    runs: list[dict[str, Any]] = []
    figures = {}
    for k in steps_bar(clusters, description="over-specified classes", progress=progress):
        target, _ = pseudo_labels_of(data.image, k, pseudo_method)
        stage2, sampler = fit_network(data.image, target, k, run_size, seed=seed, progress=False)
        labels2 = predict_labels(stage2, data.image)
        teacher = self_correct(
            copy.deepcopy(stage2),
            sampler,
            steps=run_size.steps_self_correct,
            batch_size=run_size.batch_size,
            seed=seed,
            progress=False,
        )
        labels3 = predict_labels(teacher, data.image)
        k_to_c = np.asarray(contingency(labels3, target, k, k))  # rows: pseudo cluster
        to_truth = np.asarray(contingency(truth, labels3, k, c))  # rows: stage-3 class
        runs.append(
            {
                "clusters": k,
                "pseudo_labels": matched_scores(target, truth, k, c),
                "stage2": matched_scores(labels2, truth, k, c),
                "stage3": matched_scores(labels3, truth, k, c),
                "stage3_classes_used": int((k_to_c.sum(0) > 0).sum()),
                "cluster_to_class": k_to_c.tolist(),
                "class_to_truth": to_truth.tolist(),
            }
        )
        figures[f"K{k}"] = confusion(
            k_to_c,
            class_names=[f"K{i}" for i in range(k)],
            column_names=[f"C{j}" for j in range(k)],
            normalize="all",
            ylabel="pseudo cluster (stage 1)",
            xlabel="class after stage 3",
            title=f"{k} clusters: where each cluster ended (fraction of voxels)",
        )
        figures[f"K{k}-truth"] = confusion(
            to_truth,
            class_names=[f"C{i}" for i in range(k)],
            column_names=data.class_names,
            normalize="row",
            ylabel="class after stage 3",
            xlabel="true phase",
            title=f"{k} clusters: stage-3 classes vs true phases (by row)",
        )
    numbers = {
        "data": data.source,
        "class_names": data.class_names,
        "settings": settings(run_size, pseudo_method=pseudo_method),
        "runs": runs,
    }
    lines = [f"over-specified classes on {data.source} ({c} true phases); mapped mIoU"]
    lines.append(f"{'K':>3}  {'pseudo':>6}  {'stage2':>6}  {'stage3':>6}  classes used by stage 3")
    for r in runs:
        lines.append(
            f"{r['clusters']:>3}  {r['pseudo_labels']['mean_iou']:6.3f}  "
            f"{r['stage2']['mean_iou']:6.3f}  {r['stage3']['mean_iou']:6.3f}  "
            f"{r['stage3_classes_used']} of {r['clusters']}"
        )
    return StudyResult("over-classes", numbers, "\n".join(lines), figures)
