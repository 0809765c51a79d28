"""Stage-3 mIoU against its number of steps, and the steps ``"auto"`` chooses.

Question: how does unsupervised stage 3 (the Unbiased Teacher after stage 2) move the
mIoU as its steps grow, on volumes of a few million voxels, and where does
``xd.selfcorrect.steps_for_volume`` (the Segmenter's ``steps_self_correct="auto"``)
stop it? Issue 20 asks that stage 3 not fall below stage 2.

Set-up, per case: ``xd.Segmenter(3, steps_self_correct=--steps3)`` with all other
defaults fitted on the LQ scan. Its stage 3 is run with ``snapshot_every=--every``
(the teacher's weights every that many steps) by wrapping
``xctdask.selfcorrect.self_correct``, which the Segmenter calls; the stage-2 weights
are kept the same way. Each snapshot is loaded into the fitted Segmenter and the whole
LQ scan segmented; the output is matched to the truth by the Hungarian algorithm and
scored inside the field of view (mIoU and IoU per class). Cases:

* ``sand``, ``fibre``: the 96×256×256 phantoms of ``independent.py`` (porespy
  geometry, another CT model; ``--cache`` reuses its simulated scans);
* ``lib64``: the library's fibre-composite phantom, 64×256×256, LQ scan.

Run:  python benchmarks/stage3_steps.py [--cases sand fibre lib64] [--cache DIR]
      [--steps 600] [--steps3 900] [--every 150] [--out FILE]
(about 15 minutes a case on 2 cores, most of it the default fit)

Results: benchmarks/results/stage3_steps.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from independent import phantom, scores

import xctdask as xd
import xctdask.selfcorrect as selfcorrect

RESULTS = Path(__file__).parent / "results"
CASES = ("sand", "fibre", "lib64")


def load(case: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LQ scan, its truth and the voxels scored (inside the field of view)."""
    if case == "lib64":
        ds = xd.phantoms.make("fibre-composite", (64, 256, 256), seed=0)
        lq, truth = ds.lq.values, ds.labels.values
        pseudo = np.asarray(xd.PseudoLabeler(3, mask="cylinder").fit(lq).predict(lq))
        return lq, truth, pseudo != 255
    options = argparse.Namespace(shape=[96, 256, 256], seed=0, cache=args.cache)
    data = phantom(case, options)
    return data["lq"], data["truth"], data["truth"] != 255


def curve(case: str, args: argparse.Namespace) -> dict:
    lq, truth, inside = load(case, args)
    kept: dict = {}
    original = selfcorrect.self_correct

    def recording(net, sampler, *rest, **options):
        kept["stage2"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        teacher = original(net, sampler, *rest, snapshot_every=args.every, **options)
        kept["snapshots"] = teacher.history.snapshots
        return teacher

    selfcorrect.self_correct = recording
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = xd.Segmenter(3, steps=args.steps, steps_self_correct=args.steps3, progress=False)
            seg.fit(lq)
        fit_seconds = round(time.perf_counter() - start, 1)
    finally:
        selfcorrect.self_correct = original
    report: dict = {"shape": list(lq.shape), "fit_seconds": fit_seconds, "by_steps": {}}
    patch = seg.network_.suggest_patch(lq.shape, seg.patch)  # what the fit trained on
    report["auto_steps"] = selfcorrect.steps_for_volume(lq.shape, patch, seg.batch_size)
    for step, state in [(0, kept["stage2"]), *kept["snapshots"]]:
        seg.network_.load_state_dict(state)
        labels = seg.transform(lq).compute().values
        report["by_steps"][str(step)] = scores(labels, truth, inside, 3)
        print(f"{case} stage-3 step {step}: {report['by_steps'][str(step)]}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--cache", help="independent.py's folder of simulated phantoms")
    parser.add_argument("--steps", type=int, default=xd.Segmenter.steps, help="stage 2")
    parser.add_argument("--steps3", type=int, default=900, help="stage 3")
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--out", default=str(RESULTS / "stage3_steps.json"))
    args = parser.parse_args()
    if not 1 <= args.every <= args.steps3:
        parser.error(f"--every must be in 1..--steps3, got {args.every}")
    import torch

    torch.set_num_threads(2)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report["setup"] = {**vars(args), "machine": "2 cores, no GPU"}
    for case in args.cases:
        report[case] = curve(case, args)
        out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
