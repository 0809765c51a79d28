"""How much noise can the network stand? (U-Net noise-robustness paper, Table 2, Fig. 7)

The paper trained a U-Net with noise on "0% of the training (and validation) data
…, 25% …, and likewise for 50%, 75% and 100%" (Table 2), the noisy images with "a
randomly varying standard deviation between 0 and 10000", and measured accuracy on
test sets each with one noise level "from σ = 0 up to σ = 30000" (Fig. 7). This study
repeats it on the user's volume with the library's training option
``noise_fraction`` / ``noise_sigma`` (:func:`xctdask.augment.noise_fraction`): noise on
a fraction p of the training patches, each with σ drawn uniformly in ``[0, σ_max]``.
σ is in units of the standard deviation of the (normalised) image, so the paper's
σ_max = 10000 on its 16-bit images maps to about one image std. The test slab (the
last ``test_fraction`` of z) gets Gaussian noise of each test σ, with a fixed seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xctdask.backend import is_number
from xctdask.studies.common import (
    RunSize,
    StudyData,
    StudyResult,
    check_values,
    fit_network,
    held_out,
    load_data,
    normalization,
    predict_labels,
    pyplot,
    resolve_size,
    scores,
    settings,
    steps_bar,
)

__all__ = ["run"]


def run(
    data: StudyData | None = None,
    *,
    size: str | RunSize = "small",
    fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
    sigma_max: float = 1.0,
    test_sigmas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
    test_fraction: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Accuracy at each test σ of networks trained with noise on a fraction of patches.

    Examples
    --------
    >>> result = run(size="tiny", fractions=(0.0, 1.0), test_sigmas=(0.0, 2.0),
    ...              progress=False)
    >>> [row["fraction"] for row in result.numbers["table"]]
    [0.0, 1.0]
    """
    data = data or load_data(size=size, seed=seed)
    truth = data.require_labels("noise-robustness")
    fractions = tuple(check_values("fractions", fractions, low=0, high=1))
    test_sigmas = tuple(check_values("test_sigmas", test_sigmas, low=0))
    if not is_number(sigma_max) or sigma_max < 0:
        raise ValueError(f"sigma_max must be a number ≥ 0, got {sigma_max!r}")
    run_size = resolve_size(size, data)
    nz = data.image.shape[0]
    n_train, test = held_out(nz, test_fraction, run_size.context)
    train_labels = np.full_like(truth, 255)
    train_labels[:n_train] = truth[:n_train]
    _, image_std = normalization(data.image[:n_train])
    rng = np.random.default_rng(seed + 1)
    unit_noise = rng.standard_normal(data.image.shape).astype(np.float32)
    k = data.n_classes
    table: list[dict[str, Any]] = []
    for fraction in steps_bar(fractions, description="noise robustness", progress=progress):
        net, _ = fit_network(
            data.image,
            train_labels,
            k,
            run_size,
            seed=seed,
            progress=False,
            noise_fraction=float(fraction),
            noise_sigma=float(sigma_max),
        )
        row: dict[str, Any] = {"fraction": float(fraction), "test": []}
        for sigma in test_sigmas:
            noisy = data.image.copy()
            noisy[test] += sigma * image_std * unit_noise[test]
            pred = predict_labels(net, noisy)[test]
            row["test"].append({"sigma": float(sigma), **scores(pred, truth[test], k)})
        table.append(row)
    numbers = {
        "data": data.source,
        "class_names": data.class_names,
        "sigma_unit": "standard deviations of the image (training part)",
        "settings": settings(run_size, sigma_max=sigma_max, test_slices=[test.start, nz]),
        "table": table,
    }
    lines = [
        f"noise robustness on {data.source}; accuracy on z {test.start}–{nz - 1}",
        f"training noise σ in [0, {sigma_max}] image std on a fraction of patches",
        f"{'noisy':>6} | test σ " + " ".join(f"{s:6.2f}" for s in test_sigmas),
    ]
    for row in table:
        acc = " ".join(f"{t['accuracy']:6.3f}" for t in row["test"])
        lines.append(f"{row['fraction']:>6.0%} |        {acc}")
    return StudyResult(
        "noise-robustness", numbers, "\n".join(lines), {"accuracy": _figure(table, sigma_max)}
    )


def _figure(table: list[dict], sigma_max: float):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in table:
        x = [t["sigma"] for t in row["test"]]
        y = [t["accuracy"] for t in row["test"]]
        ax.plot(x, y, "o-", label=f"noise on {row['fraction']:.0%} of training patches")
    ax.axvline(sigma_max, color="grey", ls=":", label=f"training σ_max = {sigma_max}")
    ax.set_xlabel("test noise σ (image standard deviations)")
    ax.set_ylabel("pixel accuracy on the test slab")
    ax.set_ylim(0, 1)
    ax.set_title("Noise robustness (noise-robustness paper, Table 2 / Fig. 7)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
