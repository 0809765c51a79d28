"""Denoising a real sparse-angle scan: the library's denoiser against tuned classical filters.

Question (issue 20): does a network trained with a clean scan beat the best classical
filter (Gaussian, median, non-local means, each tuned on the training half) by ≥ 3 dB
PSNR on real data, as the Stacked-DenseUSeg paper's denoiser does on its data?

Data: the real synchrotron projections of a tooth (APS, TomoPy's ``tooth.h5``, BSD-3:
181 angles over 180°, 2 detector rows × 640 columns), reconstructed by filtered back
projection (``xd.phantoms.reconstruct``, rotation centre 295.5): the **clean (HQ)**
scan uses all 181 angles, the **LQ** scan every ``--angle-step``-th (46 angles at 4),
with the streaks of an undersampled scan. Both are 2×640×640.

Split: the network and the filters learn on the upper half of both slices (y < 320)
and are scored on the lower half, inside the field of view (the reconstruction circle).
PSNR uses one data range for every method: the clean scan's max − min in the field of
view. Shown for the whole test half, the sample (the tooth, dilated) and the air around
it.

* Filters: ``xd.metrics.FilterBaseline`` (scipy Gaussian σ, median window, scikit-image
  non-local means h; each output mapped to the clean grey values by the least-squares
  line over the training voxels), the best candidate of each filter on the training half.
* Network: ``unet2d`` with ``task="denoise"`` (depth 4, f0 16), trained with
  ``xd.train`` on 128² patches of the training half (batch 8, MSE, weak geometric
  augmentation, cosine schedule, lr 1e-3), applied with ``xd.predict(output="denoised")``
  (256² tiles, overlap 0.5).
* The route of ``xctdask segment --clean``: ``xd.Segmenter(3, clean=hq, stack="slices",
  mask=None)`` with its defaults (the stacked denoise+segment network, trained on the
  clean scan's pseudo labels and the clean scan; ``--segmenter-steps``, 0 skips it),
  ``transform(lq, output="denoised")``, which comes back in the clean scan's grey values.

Run:  python benchmarks/denoise.py [--steps 1000] [--segmenter-steps 600] [--angle-step 4]
      (≈ 25 min on 2 cores)
Results: benchmarks/results/denoise.json (and a table on stdout)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

import xctdask as xd

RESULTS = Path(__file__).parent / "results"


def load_tooth(path: Path, angle_step: int) -> tuple[np.ndarray, np.ndarray]:
    from xctdask.io import open_projections
    from xctdask.phantoms import reconstruct

    projections = open_projections(path)
    hq = reconstruct(projections, center=295.5).values.astype(np.float32)
    lq = reconstruct(projections, center=295.5, angle_step=angle_step).values
    return hq, lq.astype(np.float32)


def regions(hq: np.ndarray) -> dict[str, np.ndarray]:
    """Training and test halves of the field of view; the sample and the air in it."""
    n = hq.shape[-1]
    yy, xx = np.mgrid[:n, :n]
    centre = (n - 1) / 2
    fov = (yy - centre) ** 2 + (xx - centre) ** 2 <= (n / 2 - 2) ** 2
    smooth = ndimage.gaussian_filter(hq.mean(0), 3)
    from skimage.filters import threshold_otsu

    sample = ndimage.binary_dilation(smooth > threshold_otsu(smooth[fov]), iterations=5)
    train, test = fov & (yy < n // 2), fov & (yy >= n // 2)
    return {
        "fov": fov,
        "train": train,
        "test": test,
        "test sample": test & sample,
        "test air": test & ~sample,
    }


def psnr(image: np.ndarray, hq: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    return round(float(xd.metrics.psnr(image[:, mask], hq[:, mask], data_range=data_range)), 2)


def train_denoiser(lq: np.ndarray, hq: np.ndarray, steps: int, seed: int):
    half = lq.shape[1] // 2
    image, clean = lq[:, :half], hq[:, :half]
    sampler = xd.PatchSampler(
        image,
        clean=clean,
        patch=(1, 128, 128),
        split=(1.0, 0.0, 0.0),
        margin=0,
        normalize=(float(image.mean()), float(image.std())),
        seed=seed,
    )
    torch.manual_seed(seed)
    net = xd.models.build("unet2d", 1, 1, task="denoise", depth=4, f0=16)
    return xd.train(net, sampler, steps=steps, lr=1e-3, batch_size=8, progress=False, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--segmenter-steps", type=int, default=600)
    parser.add_argument("--angle-step", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(Path(__file__).parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(RESULTS / "denoise.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    hq, lq = load_tooth(Path(args.data) / "tooth" / "tooth.h5", args.angle_step)
    masks = regions(hq)
    data_range = float(hq[:, masks["fov"]].max() - hq[:, masks["fov"]].min())
    scored = ("train", "test", "test sample", "test air")
    rows: dict[str, dict] = {"LQ scan": {m: psnr(lq, hq, masks[m], data_range) for m in scored}}

    clock = time.perf_counter()
    filters = xd.metrics.FilterBaseline().fit(lq, hq, masks["train"], data_range=data_range)
    for name in filters.filters:
        choice = max((k for k in filters.scores_ if k[0] == name), key=filters.scores_.get)
        out = filters.transform(lq, choice=choice)
        rows[f"{name} ({choice[1]:g})"] = {m: psnr(out, hq, masks[m], data_range) for m in scored}
    seconds = {"filters_tuned": round(time.perf_counter() - clock, 1)}

    clock = time.perf_counter()
    net = train_denoiser(lq, hq, args.steps, args.seed)
    seconds["network_trained"] = round(time.perf_counter() - clock, 1)
    denoised = xd.predict(lq, net, output="denoised", tile=256).values
    network = f"unet2d denoiser ({args.steps} steps)"
    rows[network] = {m: psnr(denoised, hq, masks[m], data_range) for m in scored}

    if args.segmenter_steps:
        clock = time.perf_counter()
        half = lq.shape[1] // 2
        segmenter = xd.Segmenter(
            3,
            stack="slices",
            mask=None,
            steps=args.segmenter_steps,
            steps_self_correct=0,
            seed=args.seed,
            progress=False,
        ).fit(lq[:, :half], clean=hq[:, :half])
        seconds["segmenter_fitted"] = round(time.perf_counter() - clock, 1)
        out = segmenter.transform(lq, output="denoised").values
        name = f"Segmenter(clean=) stacked ({args.segmenter_steps} steps)"
        rows[name] = {m: psnr(out, hq, masks[m], data_range) for m in scored}

    best_filter = f"{filters.choice_[0]} ({filters.choice_[1]:g})"  # chosen on training
    margin = round(rows[network]["test"] - rows[best_filter]["test"], 2)
    air = masks["test air"]
    report = {
        "data": "tooth.h5 (APS), 2×640×640, HQ 181 angles, LQ every "
        f"{args.angle_step}th ({len(range(0, 181, args.angle_step))} angles)",
        "psnr_db": rows,
        "best_filter_on_train": best_filter,
        "network_minus_best_filter_test_db": margin,
        "goal_met": bool(margin >= 3.0),
        "hq_air_fluctuation": float(
            np.std(hq[:, air] - np.stack([ndimage.gaussian_filter(z, 3) for z in hq])[:, air])
        ),
        "network_air_rmse": float(np.sqrt(np.mean((denoised[:, air] - hq[:, air]) ** 2))),
        "seconds": seconds,
        "steps": args.steps,
        "machine": "2 cores, no GPU (torch threads 2)",
    }
    print(f"{'method':40s}" + "".join(f"{m:>14s}" for m in scored))
    for name, values in rows.items():
        print(f"{name:40s}" + "".join(f"{values[m]:14.2f}" for m in scored))
    print(
        f"network − best filter ({best_filter}) on the test half: {margin:+.2f} dB "
        f"(goal ≥ +3: {'met' if margin >= 3 else 'not met'}); the clean scan's own "
        f"fluctuation in the air {report['hq_air_fluctuation']:.2e}, the network's error "
        f"there {report['network_air_rmse']:.2e}"
    )
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
