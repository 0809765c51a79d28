"""Does the distributed sampler deliver patches faster than training consumes them?

Question: patches per second that ``PatchSampler`` delivers from a Zarr volume on a
``LocalCluster``, against the patches per second that a training step of ``unet2d``
(f0 = 16, depth 4) consumes on the same machine. Goal: the sampler delivers ≥ 3× what
training consumes, so training never waits for data.

Set-up: a fibre-composite HQ phantom written to Zarr (chunks 16×256×256) and its labels;
a LocalCluster of 2 worker processes × 1 thread. Patches are 2.5D, 5 slices of 256×256,
batch 8, class-balanced. Measured, in this order:

1. **sampler**: batches drawn with 4 in flight, nothing else running (patches/s);
2. **training**: optimisation steps on an in-memory batch (forward, backward, AdamW
   step), so no data loading is counted (patches/s consumed);
3. **fed**: ``xd.train`` for the same number of steps reading from the sampler (the
   real pipeline); its patches/s against (2) shows whether training waited.

On this 2-core machine the sampler's workers and training share the cores, so (3) is
the honest end-to-end figure. Where a CUDA GPU is present training runs on it.

Run:  python benchmarks/sampling.py
Results: benchmarks/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from distributed import Client, LocalCluster

import xctdask as xd

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="xctdask-bench-sampling-"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict = {
        "shape": list(args.shape),
        "patch": [1, 256, 256],
        "context": 5,
        "batch_size": args.batch_size,
        "workers": 2,
        "machine": platform.platform(),
        "training_device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    try:
        ds = xd.phantoms.make("fibre-composite", tuple(args.shape), seed=0, lazy=True)
        xd.save_volume(ds.hq.chunk({"z": 16}), workdir / "hq.zarr", progress=False)
        xd.save_volume(
            ds.labels.chunk({"z": 16}), workdir / "labels.zarr", kind="labels", progress=False
        )
        image = xd.open_volume(workdir / "hq.zarr")
        labels = xd.open_volume(workdir / "labels.zarr")
        lo, hi = float(image.data.min().compute()), float(image.data.max().compute())
        sampler = xd.PatchSampler(
            image,
            labels,
            patch=(1, 256, 256),
            context=5,
            margin=4,
            normalize=((lo + hi) / 2, (hi - lo) / 4),
            seed=0,
        )
        next(sampler.batches("train", args.batch_size, 1))  # warm the workers
        start = time.perf_counter()
        for _ in sampler.batches("train", args.batch_size, args.batches, prefetch=4):
            pass
        t_sampler = time.perf_counter() - start
        delivered = args.batches * args.batch_size / t_sampler
        report["sampler_patches_per_s"] = delivered
        print(f"sampler: {delivered:.1f} patches/s ({args.batches} batches in {t_sampler:.1f} s)")

        net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=5).to(device)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        batch = next(sampler.batches("train", args.batch_size, 1))
        x, y = batch["image"].to(device), batch["target"].to(device)
        loss = xd.losses.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss(net(x), y).backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()

        step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        t_train = time.perf_counter() - start
        consumed = args.steps * args.batch_size / t_train
        report["training_patches_per_s"] = consumed
        print(f"training step alone: {consumed:.1f} patches/s ({t_train / args.steps:.2f} s/step)")

        net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=5)
        start = time.perf_counter()
        xd.train(
            net,
            sampler,
            steps=args.steps,
            batch_size=args.batch_size,
            val_every=10**9,
            val_batches=1,
            progress=False,
            device=device,
        )
        t_fed = time.perf_counter() - start
        fed = args.steps * args.batch_size / t_fed
        report["fed_training_patches_per_s"] = fed
        report["sampler_over_training"] = round(delivered / consumed, 2)
        report["fed_over_training"] = round(fed / consumed, 2)
        print(
            f"xd.train fed by the sampler: {fed:.1f} patches/s (includes one validation batch)\n"
            f"sampler / training = {delivered / consumed:.1f}× (goal ≥ 3×); "
            f"fed / training alone = {fed / consumed:.2f}"
        )
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
