"""What did self-correction look at? (SR-CT self-correction paper, Fig. 11)

The paper shows, for one slice, the image with the stage-2 and stage-3 predictions
(top row) and the Grad-CAM scores of each class for the stage-2 model (second row)
and the final model (third row): "after stage 2, the model weights highly those
regions that align with the pseudo label", while after stage 3 the scores "align much
better with the ground truth structures". This study trains stages 2 and 3 on the
volume (unsupervised, as :func:`xctdask.segment`), computes
:func:`xctdask.explain.gradcam` of every class for both networks on the chosen slice,
and draws the same figure. As a number it reports, per class, how well each heat map
picks out its class: the Pearson correlation between the heat map and the mask of
the true phase the class is matched to (Hungarian), for stage 2 and stage 3.
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
)

__all__ = ["run"]


def _correlation(heat: np.ndarray, mask: np.ndarray) -> float | None:
    if heat.std() == 0 or mask.std() == 0:
        return None
    return float(np.corrcoef(heat.ravel(), mask.ravel().astype(float))[0, 1])


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    slice_index: int | None = None,
    layer: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Grad-CAM of each class for the stage-2 and the stage-3 network, side by side.

    Examples
    --------
    >>> result = run(size="tiny", progress=False)
    >>> sorted(result.numbers["stage3"])
    ['correlation', 'mapping', 'scores']
    """
    from xctdask.explain import gradcam
    from xctdask.selfcorrect import self_correct

    data = data or load_data(size=size, seed=seed)
    run_size = resolve_size(size, data)
    k = data.n_classes
    z = data.image.shape[0] // 2 if slice_index is None else slice_index
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool):
        raise ValueError(f"slice_index must be a whole number, got {slice_index!r}")
    if not 0 <= z < data.image.shape[0]:
        raise ValueError(f"slice {z} is outside the volume's {data.image.shape[0]} slices")
    target, _ = pseudo_labels_of(data.image, k)
    stage2, sampler = fit_network(data.image, target, k, run_size, seed=seed, progress=progress)
    stage3 = self_correct(
        copy.deepcopy(stage2),
        sampler,
        steps=run_size.steps_self_correct,
        batch_size=run_size.batch_size,
        seed=seed,
        progress=progress,
    )
    numbers: dict[str, Any] = {
        "data": data.source,
        "class_names": data.class_names,
        "slice": z,
        "settings": settings(run_size, layer=layer or "last decoder block"),
    }
    panels = {}
    for name, net in (("stage2", stage2), ("stage3", stage3)):
        labels = predict_labels(net, data.image)
        heat = np.stack([gradcam(net, data.image, c, layer=layer, slices=[z])[0] for c in range(k)])
        entry: dict[str, Any] = {}
        if data.labels is not None:
            matched = matched_scores(labels, data.labels, k, k)
            entry["scores"] = {key: v for key, v in matched.items() if key != "mapping"}
            entry["mapping"] = matched["mapping"]
            entry["correlation"] = [
                _correlation(heat[c], data.labels[z] == matched["mapping"][c]) for c in range(k)
            ]
        numbers[name] = entry
        panels[name] = (labels[z], heat)
    figure = _figure(data, z, panels)
    lines = [f"Grad-CAM on {data.source}, slice z = {z}"]
    if data.labels is not None:
        lines.append("correlation of each class's heat map with its matched true phase:")
        for name in ("stage2", "stage3"):
            corr = " ".join(
                "  n/a" if v is None else f"{v:+.2f}" for v in numbers[name]["correlation"]
            )
            miou = numbers[name]["scores"]["mean_iou"]
            lines.append(f"  {name}: {corr}   (mIoU {miou:.3f})")
    return StudyResult("gradcam", numbers, "\n".join(lines), {"slice": figure})


def _figure(data: StudyData, z: int, panels: dict[str, tuple[np.ndarray, np.ndarray]]):
    plt = pyplot()
    k = data.n_classes
    cols = max(k, 3 + (data.labels is not None))
    fig, axes = plt.subplots(3, cols, figsize=(2.4 * cols, 7.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    top = [("image", data.image[z], "gray")]
    if data.labels is not None:
        top.append(("truth", data.labels[z], "tab10"))
    top += [(f"{n} prediction", panels[n][0], "tab10") for n in ("stage2", "stage3")]
    for ax, (title, img, cmap) in zip(axes[0], top, strict=False):
        ax.imshow(img, cmap=cmap, interpolation="nearest", vmin=0 if cmap == "tab10" else None,
                  vmax=9 if cmap == "tab10" else None)  # fmt: skip
        ax.set_title(title, fontsize=9)
    for row, name in ((1, "stage2"), (2, "stage3")):
        heat = panels[name][1]
        for c in range(k):
            ax = axes[row, c]
            ax.imshow(data.image[z], cmap="gray")
            shown = heat[c] / heat[c].max() if heat[c].max() > 0 else heat[c]
            im = ax.imshow(shown, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(f"{name.replace('stage', 'stage ')}: class {c}", fontsize=8)
    fig.colorbar(im, ax=axes[1:, :].ravel().tolist(), shrink=0.6, label="Grad-CAM (÷ max)")
    fig.suptitle("Grad-CAM of stage 2 and stage 3 (SR-CT paper, Fig. 11)")
    return fig
