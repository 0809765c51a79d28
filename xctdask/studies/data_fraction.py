"""U-Net or Pix2Pix with little data? (PXCT paper, Fig. 2)

The PXCT paper merged its training and validation images and trained both networks
"with different proportions of data, ranging from 10% to 100% of the new training
set, increasing by 10% in each iteration", evaluated on the same test set with the
Dice coefficient; "Pix2Pix achieved a higher Dice coefficient with less data compared
to U-Net" (Fig. 2). This study repeats it on the user's volume: the last 10 % of the
z-slices are the test set, the rest the training set; each fraction trains on a random
subset of the training slices (nested: a larger fraction keeps the smaller one's
slices), fully annotated, for the same number of steps.
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

__all__ = ["run"]

MODELS = {"unet": "unet2d", "pix2pix": "pix2pix"}


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    fractions: list[float] | None = None,
    models: tuple[str, ...] = ("unet", "pix2pix"),
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Dice of U-Net and Pix2Pix trained on 10 %, 20 %, …, 100 % of the training slices.

    Examples
    --------
    >>> result = run(size="tiny", fractions=[0.5, 1.0], progress=False)
    >>> sorted(result.numbers["curves"]), len(result.numbers["curves"]["unet"])
    (['pix2pix', 'unet'], 2)
    """
    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("data-fraction")
    if isinstance(models, str):
        models = (models,)
    if not models:
        raise ValueError(f"models is empty: choose from {sorted(MODELS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    if len(set(models)) < len(models):
        raise ValueError(f"models repeat a value: {list(models)}")
    if fractions is None:
        fractions = [round(0.1 * i, 1) for i in range(1, 11)]
    fractions = sorted(check_values("fractions", fractions, low=0, high=1))
    if fractions[0] == 0:
        raise ValueError(f"fractions must be in (0, 1]: 0 trains on nothing; got {fractions}")
    run_size = resolve_size(size, data)
    nz = data.image.shape[0]
    n_train, test = held_out(nz, test_fraction, run_size.context)
    order = np.random.default_rng(seed).permutation(n_train)
    k = data.n_classes
    curves: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    runs = [(m, f) for m in models for f in fractions]
    for model, fraction in steps_bar(runs, description="data fraction", progress=progress):
        count = max(1, round(fraction * n_train))
        chosen = np.sort(order[:count])
        sparse = np.full_like(truth, 255)
        sparse[chosen] = truth[chosen]
        net, _ = fit_network(
            data.image, sparse, k, run_size, model=MODELS[model], seed=seed, progress=False
        )
        pred = predict_labels(net, data.image)[test]
        curves[model].append(
            {"fraction": fraction, "slices": count, **scores(pred, truth[test], k)}
        )
    numbers = {
        "data": data.source,
        "class_names": data.class_names,
        "settings": settings(run_size, test_slices=[test.start, nz], training_slices=n_train),
        "curves": curves,
    }
    lines = [f"data fraction on {data.source}; mean Dice on z {test.start}–{nz - 1}"]
    lines.append(f"{'fraction':>8}  " + "  ".join(f"{m:>8}" for m in models))
    for i, f in enumerate(fractions):
        row = "  ".join(f"{curves[m][i]['mean_dice']:8.3f}" for m in models)
        lines.append(f"{f:>8.0%}  {row}")
    return StudyResult("data-fraction", numbers, "\n".join(lines), {"dice": _figure(curves)})


def _figure(curves: dict[str, list[dict]]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    labels = {"unet": "U-Net", "pix2pix": "Pix2Pix"}
    for model, points in curves.items():
        x = [100 * p["fraction"] for p in points]
        ax.plot(x, [p["mean_dice"] for p in points], "o-", label=f"{labels[model]} (mean)")
    ax.set_xlabel("training slices used (%)")
    ax.set_ylabel("Dice on the test slices")
    ax.set_ylim(0, 1)
    ax.set_title("Training-set size (PXCT paper, Fig. 2)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
