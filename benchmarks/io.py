"""Read and write throughput of open_volume / save_volume against plain zarr + dask.

Question: does xctdask's I/O layer (resume bookkeeping, one task per chunk, metadata)
cost anything next to the plain path, ``da.store`` into a ``zarr.create_array`` and
``da.from_zarr``, with the same codec (Blosc zstd level 3) and chunks, on the same
data in the same run? Goal: xctdask ≥ 0.9 of the plain path's GB/s.

The volume (default 512×1024×1024 uint16 = 1 GiB, CT-like: smooth phases plus noise)
is generated once and persisted in the workers' memory, so the write timings measure
encode + write, not generation. Reads compute ``sum()`` of the whole volume: decode +
one reduction. Files are fresh; the OS page cache is not dropped (no root needed), so
reads are from memory-cached files on both paths alike. Each measurement is repeated
``--repeats`` times and the best time is kept.

Run:  python benchmarks/io.py            (1 GiB, 2 worker processes)
      python benchmarks/io.py --shape 128 512 512 --repeats 1   (quick)
Results: benchmarks/results/io.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster
from zarr.codecs import BloscCodec

import xctdask as xd

RESULTS = Path(__file__).parent / "results"


def ct_like_block(block_info=None):
    info = block_info[None]
    shape = info["chunk-shape"]
    loc = info["array-location"]
    rng = np.random.default_rng(abs(hash(tuple(s for s, _ in loc))) % 2**32)
    z, y, x = np.ogrid[loc[0][0] : loc[0][1], loc[1][0] : loc[1][1], loc[2][0] : loc[2][1]]
    phase = (np.sin(x / 37.0) + np.cos(y / 23.0) + np.sin(z / 17.0) > 0.5).astype(np.float32)
    values = 20000 + 15000 * phase + rng.normal(0, 800, shape)
    return values.clip(0, 65535).astype(np.uint16)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 1024, 1024))
    parser.add_argument("--chunks", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="xctdask-io-", dir=args.dir))
    codec = BloscCodec(cname="zstd", clevel=3)
    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        volume = da.map_blocks(
            ct_like_block,
            dtype=np.uint16,
            chunks=tuple(
                tuple(min(c, s - i) for i in range(0, s, c))
                for s, c in zip(args.shape, args.chunks, strict=False)
            ),
        ).persist()
        dask.compute(volume.sum())
        gb = volume.nbytes / 1e9

        def plain_write():
            path = scratch / "plain.zarr"
            shutil.rmtree(path, ignore_errors=True)
            target = zarr.create_array(
                str(path),
                shape=volume.shape,
                chunks=args.chunks,
                dtype=volume.dtype,
                compressors=codec,
                fill_value=0,
            )
            da.store(volume, target, lock=False)

        def xct_write():
            xd.save_volume(
                volume,
                scratch / "xct.zarr",
                chunks=tuple(args.chunks),
                overwrite=True,
                progress=False,
            )

        def plain_read():
            return da.from_zarr(str(scratch / "plain.zarr")).sum().compute()

        def xct_read():
            return xd.open_volume(scratch / "xct.zarr").data.sum().compute()

        results = {}
        for name, fn in (
            ("plain_write", plain_write),
            ("xctdask_write", xct_write),
            ("plain_read", plain_read),
            ("xctdask_read", xct_read),
        ):
            seconds = best_of(args.repeats, fn)
            results[name] = {"seconds": round(seconds, 3), "gb_per_s": round(gb / seconds, 3)}
            print(f"{name:14s} {seconds:7.2f} s  {gb / seconds:6.3f} GB/s", flush=True)
        assert plain_read() == xct_read(), "the two stores hold different data"
        stored = sum(f.stat().st_size for f in (scratch / "xct.zarr").rglob("*") if f.is_file())

    ratios = {
        "write_ratio": round(
            results["xctdask_write"]["gb_per_s"] / results["plain_write"]["gb_per_s"], 3
        ),
        "read_ratio": round(
            results["xctdask_read"]["gb_per_s"] / results["plain_read"]["gb_per_s"], 3
        ),
    }
    print(
        f"xctdask / plain: write {ratios['write_ratio']:.3f}, read {ratios['read_ratio']:.3f} "
        "(goal ≥ 0.9)"
    )
    report = {
        "benchmark": "io",
        "shape": list(args.shape),
        "chunks": list(args.chunks),
        "dtype": "uint16",
        "size_gb": round(gb, 3),
        "stored_gb": round(stored / 1e9, 3),
        "codec": "blosc zstd 3",
        "workers": args.workers,
        "threads_per_worker": 1,
        "repeats": args.repeats,
        "machine": f"{platform.node()} {platform.processor()}",
        **results,
        **ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "io.json").write_text(json.dumps(report, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
