"""How long does a phantom take to generate? Goal: a 64×256×256 HQ/LQ pair in < 60 s on 2 cores.

Times ``xctdask.phantoms.make`` for each kind with the threaded scheduler (2 threads)
and on a ``LocalCluster`` of 2 single-threaded worker processes, in one run.

Run:      python benchmarks/phantoms.py [--shape 64 256 256]
Results:  benchmarks/results/phantoms.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import dask
from distributed import Client, LocalCluster

from xctdask import phantoms

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    args = parser.parse_args()
    shape = tuple(args.shape)
    results: dict[str, dict[str, float]] = {}
    for kind in phantoms.KINDS:
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            phantoms.make(kind, shape, seed=0)
        threaded = time.perf_counter() - start
        results[kind] = {"threads_2_s": round(threaded, 2)}
        print(f"{kind:16s} threads(2):        {threaded:6.1f} s", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster):
            for kind in phantoms.KINDS:
                start = time.perf_counter()
                ds = phantoms.make(kind, shape, seed=0, lazy=True).persist()
                dask.compute(ds.labels.data.sum())
                seconds = time.perf_counter() - start
                results[kind]["local_cluster_2x1_s"] = round(seconds, 2)
                print(f"{kind:16s} LocalCluster(2×1): {seconds:6.1f} s", flush=True)
    worst = max(v for r in results.values() for v in r.values())
    print(f"slowest: {worst:.1f} s (goal < 60 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "phantoms.json").write_text(
        json.dumps(
            {
                "benchmark": "phantoms",
                "shape": list(shape),
                "results": results,
                "slowest_s": worst,
                "goal_s": 60,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
