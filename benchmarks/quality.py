"""Do stages 2 and 3 improve on the pseudo labels they learn from?

Question: on the LQ scans of the ``crystal`` and ``fibre-composite`` phantoms, the mIoU
against the true labels of (1) stage-1 pseudo labels, (2) the stage-2 network trained on
them, (3) the stage-3 Unbiased Teacher that refines (2) without looking at the pseudo
labels again. Goal: stage 3 ≥ pseudo labels + 10 mIoU points (the paper reports +16).

Set-up, per phantom (all defaults of the library unless said):

* LQ scan of ``--shape`` voxels; stage 1 = ``PseudoLabeler(3, "kmeans", mask="cylinder")``;
* stage 2 = ``unet2d`` (depth 3, f0 16, 2.5D with 3 slices, no skips) trained by
  ``xd.train`` on class-balanced 64×64 patches of the pseudo labels (``--steps``);
* stage 3 = ``xd.self_correct`` from the stage-2 weights (``--steps3``), twice: with the
  default strong augmentation and with a mild one (contrast, noise, blur only);
* every network is run over the whole volume with ``xd.predict``.

mIoU is over the voxels inside the field of view, after matching the pseudo-label
clusters to the true classes once (Hungarian, on the pseudo labels); the networks
inherit that matching since they learn the cluster ids. Training curves go to
``benchmarks/results/quality_<phantom>.png``.

Run:  python benchmarks/quality.py
Results: benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

import xctdask as xd

RESULTS = Path(__file__).parent / "results"


def run_phantom(kind: str, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    ds = xd.phantoms.make(kind, tuple(args.shape), seed=args.seed)
    lq, truth = ds.lq.values, ds.labels.values
    n = 3
    labeler = xd.PseudoLabeler(n, "kmeans", mask="cylinder").fit(lq)
    pseudo = labeler.predict(lq)
    inside = pseudo != 255
    mapping = xd.metrics.match_labels(pseudo, np.where(inside, truth, 255), n, n)

    def score(labels: np.ndarray) -> float:
        mapped = xd.metrics.apply_mapping(labels, mapping)
        return round(float(xd.metrics.mean_iou(mapped[inside], truth[inside], n_classes=n)), 4)

    def segment(net) -> np.ndarray:
        out = xd.predict(lq, net, tile=args.shape[-1], batch_size=4)
        return out.compute(scheduler="threads").values

    norm = (float(lq[inside].mean()), float(lq[inside].std()))
    sampler = xd.PatchSampler(
        lq, pseudo, patch=(1, 64, 64), context=3, margin=3, normalize=norm, seed=args.seed
    )
    report = {"pseudo": score(pseudo), "pseudo_method": "kmeans"}
    torch.manual_seed(args.seed)
    net = xd.models.build("unet2d", 1, n, depth=3, f0=16, context=3, skip=False)
    net = xd.train(net, sampler, steps=args.steps, lr=3e-3, val_every=100, progress=False)
    stage2 = copy.deepcopy(net.state_dict())
    labels2 = segment(net)
    report["stage2"] = score(labels2)
    histories = [net.history]
    variants = {
        "stage3_default": None,
        "stage3_mild": xd.augment.StrongAugment(ops=("contrast", "noise", "blur")),
    }
    for name, strong in variants.items():
        net.load_state_dict(stage2)
        teacher = xd.self_correct(
            net, sampler, steps=args.steps3, threshold=0.9, strong=strong, progress=False
        )
        labels3 = segment(teacher)
        report[name] = score(labels3)
        report[name + "_changed_fraction"] = round(float((labels3 != labels2)[inside].mean()), 4)
        report[name + "_masked_fraction"] = round(
            float(np.mean(teacher.history.masked_fraction[-20:])), 3
        )
        histories.append(teacher.history)
    best3 = max(report["stage3_default"], report["stage3_mild"])
    report["gain_stage3_over_pseudo_points"] = round(100 * (best3 - report["pseudo"]), 1)
    report["goal_met"] = report["gain_stage3_over_pseudo_points"] >= 10
    report["seconds"] = round(time.perf_counter() - start, 1)
    xd.viz.training_curves(
        *histories,
        labels=("stage 2", "stage 3 (default strong)", "stage 3 (mild strong)"),
        path=RESULTS / f"quality_{kind}.png",
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 192, 192))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--steps3", type=int, default=900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["crystal", "fibre-composite"])
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    report = {"shape": list(args.shape), "steps": args.steps, "steps3": args.steps3}
    for kind in args.kinds:
        report[kind] = run_phantom(kind, args)
        print(kind, json.dumps(report[kind]), flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
