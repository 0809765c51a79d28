"""How much of distributed inference is network time, and how does it compare to MONAI?

Question: running ``unet2d`` (f0 = 16, depth 4, 2.5D with 5 context slices) over a
volume, what fraction of ``xd.predict``'s wall time on a ``LocalCluster`` is the network
itself, how fast is it against MONAI's ``sliding_window_inference``, and how does it
scale from 1 to 2 workers? Goals (CPU): efficiency ≥ 0.8, speed vs MONAI ≥ 1.

Set-up: a fibre-composite LQ phantom in Zarr (chunks 8×256×256), tile 128×128,
overlap 0.5, gaussian blend, batch 8, labels out. All in one run, same volume, same
network, same tiles:

1. **network**: the lattice's tiles cut from the normalised volume in memory and run
   through the network in batches of 8, nothing else (torch on all cores);
2. **xctdask**: ``xd.predict(...)`` read from Zarr and computed to labels on a
   LocalCluster of 2 worker processes × 1 thread (and of 1 × 1 for the scaling figure);
3. **MONAI**: ``sliding_window_inference`` on the whole normalised volume in memory,
   slices as the batch with their 5-slice context stacks as channels, then argmax.

Efficiency = (1) / (2); speed ratio = (3) / (2); redundancy = network voxels evaluated ÷
output voxels; tasks per chunk = tasks in predict's graph beyond the input's ÷ chunks.
Each timing is the best of ``--repeats`` with an idle scheduler in between; for xctdask
the first run on a fresh cluster (workers receive the network, warm up PyTorch) is
reported separately and not counted in the best.

Run:  python benchmarks/inference.py
Results: benchmarks/results/inference.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from distributed import Client, LocalCluster

import xctdask as xd
from xctdask.inference.lattice import Lattice

RESULTS = Path(__file__).parent / "results"


def timings(repeats: int, run, client: Client | None = None) -> list[float]:
    times = []
    for _ in range(repeats):
        if client is not None:
            while client.processing() and any(client.processing().values()):
                time.sleep(0.05)
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def network_only(net, volume: np.ndarray, lattice: Lattice, context: int, batch: int) -> float:
    """Seconds to run every lattice tile through ``net``, batched, in memory."""
    half = (context - 1) // 2
    padded = torch.from_numpy(np.pad(volume, ((half, half), (0, 0), (0, 0)), mode="edge"))
    corners = np.stack(np.meshgrid(*lattice.starts, indexing="ij"), -1).reshape(-1, 3)
    _, ty, tx = lattice.tile
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(corners), batch):
            tiles = [
                padded[z : z + context, y : y + ty, x : x + tx]
                for z, y, x in corners[first : first + batch]
            ]
            net(torch.stack(tiles))
    return time.perf_counter() - start


def monai_run(net, volume: np.ndarray, tile: int, context: int, batch: int) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    half = (context - 1) // 2
    padded = np.pad(volume, ((half, half), (0, 0), (0, 0)), mode="edge")
    stacks = np.stack([padded[z : z + context] for z in range(volume.shape[0])])
    with torch.no_grad():
        logits = sliding_window_inference(
            torch.from_numpy(stacks), (tile, tile), batch, net, overlap=0.5, mode="gaussian"
        )
    return logits.argmax(1).numpy().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()
    context, batch = 5, args.batch_size
    workdir = Path(tempfile.mkdtemp(prefix="xctdask-bench-inference-"))
    try:
        ds = xd.phantoms.make("fibre-composite", tuple(args.shape), seed=0)
        lq = ds.lq.values
        store = workdir / "lq.zarr"
        xd.save_volume(lq, store, chunks=(8, args.shape[1], args.shape[2]))
        torch.manual_seed(0)
        net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=context).eval()
        norm = (float(lq.mean()), float(lq.std()))
        net.normalization = norm
        normalised = ((lq - norm[0]) / norm[1]).astype(np.float32)
        lattice = Lattice.build(lq.shape, (1, args.tile, args.tile), 0.5, "gaussian")
        redundancy = lattice.n_tiles * float(np.prod(lattice.tile)) / lq.size
        report: dict = {
            "shape": list(args.shape),
            "tile": args.tile,
            "overlap": 0.5,
            "context": context,
            "batch_size": batch,
            "network_parameters": net.n_parameters,
            "tiles": lattice.n_tiles,
            "redundancy": round(redundancy, 3),
            "machine": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        }
        with torch.no_grad():  # warm-up
            net(torch.zeros(batch, context, args.tile, args.tile))
        t_net = min(
            network_only(net, normalised, lattice, context, batch) for _ in range(args.repeats)
        )
        report["network_seconds"] = round(t_net, 3)
        monai_labels = monai_run(net, normalised[:2], args.tile, context, batch)  # warm-up
        start = time.perf_counter()
        monai_labels = monai_run(net, normalised, args.tile, context, batch)
        report["monai_seconds"] = round(time.perf_counter() - start, 3)
        vol = xd.open_volume(store)
        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                labels = xd.predict(vol, net, tile=args.tile, batch_size=batch)
                graph = len(labels.data.__dask_graph__()) - len(vol.data.__dask_graph__())
                report["tasks_per_chunk"] = round(graph / vol.data.npartitions, 2)
                result = {}

                def run(labels=labels, result=result):
                    result["labels"] = labels.data.compute()

                seconds = timings(args.repeats + 1, run, client)
                report[f"xctdask_first_run_seconds_{workers}_workers"] = round(seconds[0], 3)
                report[f"xctdask_seconds_{workers}_workers"] = round(min(seconds[1:]), 3)
        t_x = report["xctdask_seconds_2_workers"]
        agree = float((result["labels"] == monai_labels).mean())
        report.update(
            efficiency=round(t_net / t_x, 3),
            speed_vs_monai=round(report["monai_seconds"] / t_x, 3),
            scaling_1_to_2_workers=round(report["xctdask_seconds_1_workers"] / t_x, 3),
            network_mvoxels_per_s=round(lattice.n_tiles * np.prod(lattice.tile) / t_net / 1e6, 3),
            xctdask_output_mvoxels_per_s=round(lq.size / t_x / 1e6, 3),
            labels_equal_to_monai=agree,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for key, value in report.items():
        print(f"{key:32s} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
