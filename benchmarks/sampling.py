"""Are stages 2 and 3 fed from a Zarr store as fast as from memory?

Question: how many training patches per second ``PatchSampler`` delivers on the path
``xd.segment`` takes with a Zarr input (the scan read from the store, its lazy pseudo
labels as the target), against the same volume in memory, and against what a stage-2
training step consumes; and whether ``xd.segment`` on the Zarr volume takes longer
than on the same volume in memory.

Set-up (the setting of issue 13): a 96×256×256 float32 CT phantom written to Zarr in
chunks of 32×128×128; a ``LocalCluster`` of 2 worker processes × 1 thread; 2.5D
patches of 7×128×128 (context 7), batches of 8, class-balanced. Measured in one run,
nothing else running:

1. **sampler, NumPy**: the volume and its pseudo labels as in-memory NumPy arrays;
2. **sampler, Zarr + stored target**: the scan and its pseudo labels both read from
   Zarr stores;
3. **sampler, Zarr + lazy target**: the scan from Zarr, the target
   ``PseudoLabeler.predict(scan)`` (what ``xd.segment`` trains on);
4. **training step**: ``xd.segment``'s default stage-2 network (``unet2d`` depth 4,
   f0 16, context 7) stepping on one in-memory batch with the thread budget of the
   training process (patches/s consumed), and with PyTorch's default threads;
5. **fed training**: ``xd.train`` reading from the Zarr + lazy-target sampler (the
   workers cut patches while the process trains), with the thread budget and with
   PyTorch's default threads (one per core);
6. **segment**: ``xd.segment`` (short: ``--steps`` stage 2 + as many stage 3 steps) on
   the Zarr-backed volume and on the same volume in memory; the ratio of the times.

Run:  python benchmarks/sampling.py            (about 5 minutes on 2 cores)
Results: benchmarks/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from distributed import Client, LocalCluster

import xctdask as xd
from xctdask.engine import thread_budget

RESULTS = Path(__file__).parent / "results"


def _patches_per_s(sampler, batches: int, batch_size: int) -> float:
    """Steady-state rate: one warm-up batch, then ``batches`` more timed."""
    stream = sampler.batches("train", batch_size)
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    elapsed = time.perf_counter() - start
    stream.close()
    return batches * batch_size / elapsed


def _training_rate(batch: dict, steps: int, threads: int) -> float:
    """Patches/s that optimisation steps of segment's default network consume."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=7)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        loss = xd.losses.CrossEntropyLoss()
        x, y = batch["image"], batch["target"]

        def step():
            opt.zero_grad()
            loss(net(x), y).backward()
            opt.step()

        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * x.shape[0] / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256))
    parser.add_argument("--chunks", type=int, nargs=3, default=(32, 128, 128))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="segment: stage 2 (and 3) steps")
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="xctdask-bench-sampling-"))
    bs = args.batch_size
    patch = {"patch": (1, 128, 128), "context": 7, "margin": 7, "seed": 0}
    report: dict = {
        "question": __doc__.split("\n")[0],
        "shape": list(args.shape),
        "chunks": list(args.chunks),
        "patch": [7, 128, 128],
        "batch_size": bs,
        "cluster": "LocalCluster, 2 workers x 1 thread",
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "command": "python benchmarks/sampling.py",
    }
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    try:
        ds = xd.phantoms.make("fibre-composite", tuple(args.shape), seed=0)
        lq = ds.lq.astype(np.float32)
        xd.save_volume(lq, workdir / "lq.zarr", chunks=tuple(args.chunks), progress=False)
        vol = xd.open_volume(workdir / "lq.zarr")
        labeler = xd.PseudoLabeler(3).fit(vol)
        pseudo = labeler.predict(vol)
        xd.save_volume(pseudo, workdir / "pseudo.zarr", progress=False)
        stored = xd.open_volume(workdir / "pseudo.zarr")
        image, target = vol.values, stored.values
        norm = (float(image.mean()), float(image.std()))
        rates = {}
        for name, (img, tgt) in {
            "numpy": (image, target),
            "zarr_stored_target": (vol, stored),
            "zarr_lazy_target": (vol, pseudo),
        }.items():
            sampler = xd.PatchSampler(img, tgt, normalize=norm, **patch)
            rates[name] = _patches_per_s(sampler, args.batches, bs)
            print(f"sampler, {name}: {rates[name]:.0f} patches/s   ({sampler!r})")
            sampler.close()
        report["sampler_patches_per_s"] = rates
        batch = next(xd.PatchSampler(image, target, normalize=norm, **patch).batches("train", bs))
        budget = thread_budget()
        consumed = _training_rate(batch, args.train_steps, budget)
        default = _training_rate(batch, args.train_steps, os.cpu_count() or 1)
        report["training_threads"] = {"budget": budget, "default": os.cpu_count()}
        report["training_patches_per_s"] = {"budget_threads": consumed, "default_threads": default}
        report["zarr_lazy_over_training"] = rates["zarr_lazy_target"] / consumed
        report["zarr_lazy_over_numpy"] = rates["zarr_lazy_target"] / rates["numpy"]
        print(
            f"training step ({budget} thread(s), the budget): {consumed:.1f} patches/s; "
            f"with {os.cpu_count()} threads: {default:.1f} patches/s\n"
            f"Zarr + lazy target / training = {report['zarr_lazy_over_training']:.1f}x "
            "(goal >= 3x)"
        )

        fed = {}
        for label, threads in (("budget_threads", budget), ("default_threads", os.cpu_count())):
            torch.manual_seed(0)
            net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=7)
            sampler = xd.PatchSampler(vol, pseudo, normalize=norm, **patch)
            start = time.perf_counter()
            xd.train(
                net,
                sampler,
                steps=args.train_steps,
                batch_size=bs,
                val_every=10**9,
                val_batches=1,
                progress=False,
                threads=threads,
            )
            fed[label] = args.train_steps * bs / (time.perf_counter() - start)
            sampler.close()
            print(
                f"xd.train fed from Zarr + lazy target, {threads} thread(s): "
                f"{fed[label]:.1f} patches/s"
            )
        report["fed_training_patches_per_s"] = fed

        options = dict(
            steps=args.steps, steps_self_correct=args.steps, patch=128, progress=False, seed=0
        )
        times = {}
        for name, data in {"zarr": vol, "memory": vol.compute()}.items():
            start = time.perf_counter()
            labels = xd.segment(data, 3, **options)
            xd.save_volume(labels, workdir / f"seg_{name}.zarr", progress=False)
            times[name] = time.perf_counter() - start
            print(f"xd.segment from {name}: {times[name]:.1f} s")
        report["segment_seconds"] = times
        report["segment_steps"] = args.steps
        report["segment_zarr_over_memory"] = times["zarr"] / times["memory"]
        print(f"segment Zarr / memory = {report['segment_zarr_over_memory']:.2f} (goal <= 1.3)")
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
