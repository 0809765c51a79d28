"""Is xctdask ready for terabytes? Graph size, client cost, efficiency, a run bigger than RAM.

Questions, all answered in one run:

1. **Graphs** (nothing computed): tasks per storage chunk, client build time and client
   peak memory (tracemalloc) of ``xd.predict`` and ``PseudoLabeler.predict`` on the
   issue's volumes: 2160×2560×2560 (a DLS 4D-CT step) in chunks 64×256×256 and
   128×512×512, tri-planar, and 8192³ uint16 (1.1 TB). Each on a Zarr store that holds
   only metadata (the realistic path: ``open_volume`` then one task per block reading
   the store) and on a lazy ``da.zeros`` (any other Dask array). "build" is the call,
   "submit" is what the client does before sending the graph (optimise and
   materialise). Goals: ≤ 3 tasks per chunk, the 1 TB graph under 5 s and 500 MB.
2. **Efficiency with a network that costs almost nothing** (a 1×1 convolution, standing
   in for a network on a GPU, so graph and I/O are what is left): ``xd.predict`` of a
   Zarr volume with ≥ 4096 storage chunks to a Zarr store on a 2-worker
   ``LocalCluster``, against the same network on the same tiles in memory plus a bare
   read of the volume and a bare write of the labels. Goal: efficiency ≥ 0.7. The
   network's time is measured on the cluster's workers at once (as read, write and
   predict are); the figure against one thread alone, divided by the workers (perfect
   parallelism, no shared memory bandwidth), is printed next to it. Two more
   baselines split what is left: a whole in-memory sliding-window inference of the same
   network (xctdask's own runner on NumPy blocks: softmax, Gaussian blend, arg-max, no
   store, no graph), so its efficiency is that of the graph and the I/O alone; and
   MONAI's ``sliding_window_inference`` in memory, what users would run instead. Both
   run on a 16-slice sample on every worker at once, scaled to the volume.
3. ``--big``: a ≥ 32 GB Zarr volume (more than this machine's memory; a CT-like
   texture with noise, which compresses like real CT) written, then ``pseudo_labels``
   and ``predict`` with the 1×1 network to Zarr: throughput, the ratio to a bare read,
   peak memory of every process.

Run:  python benchmarks/scale.py [--big] [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch

import xctdask as xd
from xctdask.cluster import peak_rss_mb

RESULTS = Path(__file__).parent / "results"


# ------------------------------------------------------------------------- helpers
def _empty_store(path: Path, shape, chunks, dtype) -> Path:
    """A Zarr array with metadata only: reads give the fill value, nothing is stored."""
    import zarr

    zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return path


def _unet(context: int = 7) -> torch.nn.Module:
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=context).eval()
    net.normalization = (1000.0, 100.0)
    return net


def _submitted_tasks(collection) -> int:
    """What the client materialises before it sends a graph: optimise, then build."""
    from dask.base import collections_to_expr

    expr = collections_to_expr([collection], optimize_graph=True).optimize()
    return len(expr.__dask_graph__())


def _measure(make, n_chunks: int) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    result = make()
    built = time.perf_counter() - start
    tasks = _submitted_tasks(result)
    total = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "tasks": tasks,
        "tasks_per_chunk": round(tasks / n_chunks, 3),
        "build_s": round(built, 3),
        "build_and_submit_s": round(total, 3),
        "client_peak_mb": round(peak / 2**20, 1),
        "result_chunks": [len(c) for c in getattr(result, "chunks", ())],
    }


def graph_cases(workdir: Path) -> list[dict]:
    cases = [
        ("2160x2560x2560", (2160, 2560, 2560), (64, 256, 256), "z", np.float32),
        ("2160x2560x2560 tri-planar", (2160, 2560, 2560), (64, 256, 256), "zyx", np.float32),
        ("2160x2560x2560 chunks 128x512x512", (2160, 2560, 2560), (128, 512, 512), "z", np.float32),
        ("8192^3 uint16 (1.1 TB)", (8192, 8192, 8192), (64, 256, 256), "z", np.uint16),
    ]
    labeler = xd.PseudoLabeler(3).fit(
        np.random.default_rng(0).normal(1000, 100, (8, 64, 64)).astype(np.uint16)
    )
    rows = []
    for name, shape, chunks, axes, dtype in cases:
        n_chunks = int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))
        store = _empty_store(workdir / f"{len(rows)}.zarr", shape, chunks, dtype)
        for source in ("zarr", "da.zeros"):

            def volume(source=source, store=store, shape=shape, chunks=chunks, dtype=dtype):
                if source == "zarr":
                    return xd.open_volume(store)
                return da.zeros(shape, chunks=chunks, dtype=dtype)

            row = {"case": name, "source": source, "stage": "predict", "chunks": n_chunks}
            row.update(
                _measure(
                    lambda v=volume, a=axes: xd.predict(v(), _unet(), tile=256, axes=a).data,
                    n_chunks,
                )
            )
            rows.append(row)
            print(json.dumps(row))
            if dtype == np.uint16 and axes == "z":
                row = {
                    "case": name,
                    "source": source,
                    "stage": "pseudo_labels (relabel)",
                    "chunks": n_chunks,
                }
                row.update(_measure(lambda volume=volume: labeler.predict(volume()), n_chunks))
                rows.append(row)
                print(json.dumps(row))
    return rows


def _ct_like(shape, chunks, dtype=np.uint16, seed=0) -> da.Array:
    """A CT-like volume: smooth phases with edges, plus noise (compresses like real CT).

    One 64×512×512 texture is made once and shared by every task (one key); every
    block is a shifted copy with its own noise, so generating a terabyte costs a copy
    and a random draw per voxel.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(64, 512, 512)).astype(np.float32), 4)
    phases = np.digitize(base, np.quantile(base, [0.6, 0.9])).astype(np.float32)
    texture = (1000 + 400 * phases + 20 * ndimage.gaussian_filter(base, 1)).astype(np.float32)

    def block(texture, block_info=None):
        info = block_info[None]
        (z0, z1), (y0, y1), (x0, x1) = info["array-location"]
        local = np.random.default_rng([seed, *info["chunk-location"]])
        zz = (np.arange(z0, z1) % 64)[:, None, None]
        yy = (np.arange(y0, y1) % 512)[None, :, None]
        xx = (np.arange(x0, x1) % 512)[None, None, :]
        values = texture[zz, yy, xx] + local.normal(0, 60, (z1 - z0, y1 - y0, x1 - x0))
        return np.clip(values, 0, np.iinfo(dtype).max).astype(dtype)

    shared = dask.delayed(texture, name=f"ct-texture-{seed}", pure=True)  # one key for all
    return da.map_blocks(
        block,
        shared,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )


def _one_by_one() -> torch.nn.Module:
    """The 1×1 network standing in for a network on a GPU. Self-contained (imports
    inside): :func:`_seconds_per_batch` builds it on the workers too."""
    import torch

    import xctdask

    torch.manual_seed(0)
    net = xctdask.models.wrap(torch.nn.Conv2d(1, 3, 1), spatial_dims=2)
    net.normalization = (1400.0, 300.0)
    return net.eval()


def _bare_read(path) -> float:
    vol = xd.open_volume(path)
    start = time.perf_counter()
    vol.data.map_blocks(
        lambda b: np.full((1, 1, 1), b.size), chunks=(1, 1, 1), dtype=np.int64
    ).sum().compute()
    return time.perf_counter() - start


def _seconds_per_batch(tile: int, batches: int) -> float:
    """One thread's time for one batch of 8 tiles through the 1×1 network and the
    softmax every output averages (the median of ``batches`` timed batches).

    Self-contained (imports inside; the only global it uses, :func:`_one_by_one`, is
    too): it is also sent to the workers, and this script's module-level names do not
    pickle there. It runs under the allocator settings ``predict``'s blocks use (see
    ``runner.tune_allocator``).
    """
    import time

    import numpy
    import torch

    from xctdask.inference.runner import inference_allocator

    net = _one_by_one()
    batch = torch.randn(8, 1, tile, tile)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), inference_allocator():  # as predict's blocks run
            net(batch).softmax(1)
            times = []
            for _ in range(batches):
                start = time.perf_counter()
                net(batch).softmax(1)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return float(numpy.median(times))


def _network_in_memory(shape, tile: int, overlap: float, client) -> tuple[float, float, int]:
    """The 1×1 network (and its softmax) over the lattice's tiles in memory, two ways.

    * **alone**: one thread in this process, with nothing else running, scaled to all
      tiles and divided by the workers: perfect parallelism, the strictest baseline;
    * **on the workers**: every worker of the cluster runs batches at the same time
      (``client.run``), as the workers of ``predict`` do, so the cores share memory
      bandwidth and caches as they do in the run it is compared with; the slowest
      worker's time per batch, for its share of the tiles.

    Returns (alone, on the workers, tiles).
    """
    lattice = xd.inference.Lattice.build(shape, (1, tile, tile), overlap, "gaussian")
    n_batches = lattice.n_tiles / 8
    batches = max(8, int(n_batches // 40))
    workers = len(client.scheduler_info()["workers"])
    alone = _seconds_per_batch(tile, batches) * n_batches / workers
    per_worker = client.run(_seconds_per_batch, tile, batches)
    together = max(per_worker.values()) * n_batches / workers
    return alone, together, lattice.n_tiles


def _sliding_window_in_memory(how: str, slices: int = 16, repeats: int = 2) -> float:
    """One thread's time for ``slices`` slices of 1024² through a whole in-memory
    sliding-window inference with the 1×1 network (tile 256, overlap 0.5, Gaussian
    blend, softmax, arg-max): no store, no graph (the best of ``repeats``).

    ``how`` is ``"xctdask"`` (``xd.predict``'s own runner on a NumPy block, with the
    synchronous scheduler) or ``"monai"`` (MONAI's ``sliding_window_inference`` on
    the slices as a batch, 8 tiles per window batch, then the arg-max). Self-contained,
    like :func:`_seconds_per_batch`: it is sent to the workers.
    """
    import time

    import dask
    import dask.array as da
    import numpy
    import torch

    import xctdask

    volume = numpy.random.default_rng(0).integers(800, 2000, (slices, 1024, 1024))
    volume = volume.astype(numpy.uint16)
    net = _one_by_one()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            if how == "xctdask":
                block = da.from_array(volume, chunks=volume.shape)
                labels = xctdask.predict(block, net, tile=256, overlap=0.5)
                with dask.config.set(scheduler="synchronous"):
                    labels.data.compute()
            else:
                from monai.inferers import sliding_window_inference

                mean, std = net.normalization
                with torch.no_grad():
                    x = (torch.from_numpy(volume.astype(numpy.float32))[:, None] - mean) / std
                    out = sliding_window_inference(
                        x, (256, 256), 8, lambda t: net(t).softmax(1), 0.5, "gaussian"
                    )
                    out.argmax(1).to(torch.uint8)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return min(times)


def _in_memory_on_workers(how: str, depth: int, client, slices: int = 16) -> float:
    """:func:`_sliding_window_in_memory` on every worker at once, scaled to ``depth``
    slices shared by the workers (the slowest worker's rate)."""
    workers = len(client.scheduler_info()["workers"])
    repeats = 1 if how == "monai" else 2
    per_worker = client.run(_sliding_window_in_memory, how, slices, repeats)
    return max(per_worker.values()) * depth / slices / workers


def _one_round(workdir: Path, client, path: Path, shape, chunks, tag: str) -> dict:
    """One timing of every quantity of the efficiency, in the order predict, read,
    write, network, sliding windows (seconds)."""
    vol = xd.open_volume(path)
    labels = xd.predict(vol, _one_by_one(), tile=256, overlap=0.5)
    start = time.perf_counter()
    xd.save_volume(labels, workdir / f"labels_{tag}.zarr", progress=False)
    t_predict = time.perf_counter() - start
    t_read = _bare_read(path)
    held = xd.open_volume(workdir / f"labels_{tag}.zarr").data.persist()
    dask.compute(held.sum())
    start = time.perf_counter()
    xd.save_volume(held, workdir / f"labels_again_{tag}.zarr", chunks=chunks, progress=False)
    t_write = time.perf_counter() - start
    del held
    t_alone, t_net, n_tiles = _network_in_memory(shape, 256, 0.5, client)
    t_ours = _in_memory_on_workers("xctdask", shape[0], client)
    times = {
        "predict_to_zarr_s": t_predict,
        "bare_read_s": t_read,
        "bare_write_s": t_write,
        "network_in_memory_on_workers_s": t_net,
        "network_in_memory_alone_s": t_alone,
        "sliding_window_in_memory_on_workers_s": t_ours,
    }
    print(json.dumps({"round": tag, **{k: round(v, 2) for k, v in times.items()}}), flush=True)
    return {"times": times, "n_tiles": n_tiles, "labels": labels}


def efficiency(workdir: Path, client, repeats: int = 1) -> dict:
    """The efficiency, from ``repeats`` rounds of every timing (each quantity's median
    over the rounds; with one round, that round). On a shared VM one quantity moved by
    25 % between runs minutes apart: rounds interleave the timings so a slow spell
    touches numerator and denominator alike, and the per-round figures show the spread."""
    shape, chunks = (1024, 1024, 1024), (16, 128, 128)  # 4096 storage chunks, 2 GiB uint16
    path = workdir / "eff.zarr"
    xd.save_volume(_ct_like(shape, chunks), path, chunks=chunks, progress=False)
    rounds = [_one_round(workdir, client, path, shape, chunks, str(r)) for r in range(repeats)]
    labels, n_tiles = rounds[0]["labels"], rounds[0]["n_tiles"]
    vol = xd.open_volume(path)
    median = {k: float(np.median([r["times"][k] for r in rounds])) for k in rounds[0]["times"]}
    t_predict, t_read, t_write = (
        median["predict_to_zarr_s"],
        median["bare_read_s"],
        median["bare_write_s"],
    )
    t_net, t_alone = median["network_in_memory_on_workers_s"], median["network_in_memory_alone_s"]
    t_ours = median["sliding_window_in_memory_on_workers_s"]

    def ratio(times: dict, key: str) -> float:
        base = times[key] + times["bare_read_s"] + times["bare_write_s"]
        return round(base / times["predict_to_zarr_s"], 3)

    report_codecs = _codec_pipelines(client, path, workdir / "labels_0.zarr", chunks)
    try:
        t_monai = _in_memory_on_workers("monai", shape[0], client)
    except ImportError:
        t_monai = None
    report = {
        "volume": list(shape),
        "storage_chunks": list(chunks),
        "n_storage_chunks": int(np.prod([s // c for s, c in zip(shape, chunks, strict=True)])),
        "dask_chunks": [int(max(c)) for c in vol.chunks],
        "lattice_tiles": n_tiles,
        "redundancy": labels.attrs["redundancy"],
        "rounds": repeats,
        **{k: round(v, 2) for k, v in median.items()},
        "efficiency": round((t_net + t_read + t_write) / t_predict, 3),
        "efficiency_per_round": [
            ratio(r["times"], "network_in_memory_on_workers_s") for r in rounds
        ],
        "efficiency_against_alone": round((t_alone + t_read + t_write) / t_predict, 3),
        "efficiency_against_sliding_window_in_memory": round(
            (t_ours + t_read + t_write) / t_predict, 3
        ),
        "efficiency_against_sliding_window_per_round": [
            ratio(r["times"], "sliding_window_in_memory_on_workers_s") for r in rounds
        ],
        "monai_in_memory_on_workers_s": None if t_monai is None else round(t_monai, 2),
        "efficiency_against_monai_in_memory": None
        if t_monai is None
        else round((t_monai + t_read + t_write) / t_predict, 3),
        "predict_gvox_per_s": round(np.prod(shape) / t_predict / 1e9, 4),
        "codec_pipelines": report_codecs,
        "tasks_per_storage_chunk": round(
            _submitted_tasks(labels.data) / (np.prod(shape) / np.prod(chunks)), 3
        ),
    }
    print(json.dumps(report))
    return report


def _use_pipeline(name: str | None) -> str:
    import zarr

    path = "zarr.core.codec_pipeline.BatchedCodecPipeline" if name is None else name
    zarr.config.set({"codec_pipeline.path": path})
    return path


def _codec_pipelines(client, volume: Path, labels: Path, chunks) -> dict:
    """Bare read of the volume and a write of the labels with zarr's own codec pipeline
    and with zarrs' Rust one (when installed), on every worker."""
    out = {}
    try:
        import zarrs  # noqa: F401
    except ImportError:
        return {"zarrs": "not installed"}
    held = xd.open_volume(labels).data.persist()
    dask.compute(held.sum())
    for name, path in (("zarr", None), ("zarrs", "zarrs.ZarrsCodecPipeline")):
        client.run(_use_pipeline, path)
        _use_pipeline(path)
        t_read = _bare_read(volume)
        start = time.perf_counter()
        xd.save_volume(held, labels.with_name(f"labels_{name}.zarr"), chunks=chunks, progress=False)
        out[name] = {"read_s": round(t_read, 2), "write_s": round(time.perf_counter() - start, 2)}
    client.run(_use_pipeline, None)
    _use_pipeline(None)
    print(json.dumps({"codec_pipelines": out}))
    return out


def big(workdir: Path, client, gigabytes: float) -> dict:
    chunks = (64, 256, 256)
    side = 2048
    nz = int(np.ceil(gigabytes * 1e9 / (side * side * 2) / 64) * 64)
    shape = (nz, side, side)
    size = np.prod(shape) * 2
    path = workdir / "big.zarr"
    report = {"shape": list(shape), "bytes": int(size), "storage_chunks": list(chunks)}
    start = time.perf_counter()
    xd.save_volume(_ct_like(shape, (256, 1024, 1024)), path, chunks=chunks, progress=True)
    report["write_s"] = round(time.perf_counter() - start, 1)
    report["stored_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    t_read = _bare_read(path)
    report["bare_read_s"] = round(t_read, 1)
    vol = xd.open_volume(path)
    start = time.perf_counter()
    labeler = xd.PseudoLabeler(3, progress=True).fit(vol)
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    xd.save_volume(labeler.predict(vol), workdir / "pseudo.zarr", kind="labels", progress=True)
    t_relabel = time.perf_counter() - start
    start = time.perf_counter()
    xd.save_volume(xd.predict(vol, _one_by_one(), tile=256), workdir / "pred.zarr", progress=True)
    t_predict = time.perf_counter() - start
    gvox = np.prod(shape) / 1e9
    report.update(
        pseudo_labels_fit_s=round(t_fit, 1),
        pseudo_labels_relabel_to_zarr_s=round(t_relabel, 1),
        predict_1x1_to_zarr_s=round(t_predict, 1),
        bare_read_gb_per_s=round(size / 1e9 / t_read, 3),
        pseudo_labels_gb_per_s=round(size / 1e9 / (t_fit + t_relabel), 3),
        pseudo_labels_gvox_per_s=round(gvox / (t_fit + t_relabel), 3),
        pseudo_labels_over_read=round((t_fit + t_relabel) / t_read, 2),
        predict_gb_per_s=round(size / 1e9 / t_predict, 3),
        predict_gvox_per_s=round(gvox / t_predict, 3),
        predict_over_read=round(t_predict / t_read, 2),
        peak_rss_mb={
            "client": round(peak_rss_mb(), 0),
            **{k: round(v, 0) for k, v in client.run(peak_rss_mb).items()},
        },
    )
    print(json.dumps(report))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", action="store_true", help="also the run bigger than memory")
    parser.add_argument("--gigabytes", type=float, default=34.0)
    parser.add_argument("--skip-graphs", action="store_true")
    parser.add_argument("--skip-efficiency", action="store_true")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of the efficiency's timings; each quantity's median is used (default 1)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="xctdask-scale-", dir=args.workdir))
    report: dict = {
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
    }
    try:
        if not args.skip_graphs:
            report["graphs"] = graph_cases(workdir)
        if not args.skip_efficiency or args.big:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cl,
                Client(cl) as client,
            ):
                if not args.skip_efficiency:
                    report["efficiency"] = efficiency(workdir, client, args.repeats)
                if args.big:
                    report["big"] = big(workdir, client, args.gigabytes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous.update(report)
    args.out.write_text(json.dumps(previous, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
