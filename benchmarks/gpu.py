"""Every GPU path, proved and measured by one command.

Question: on one GPU, do the CuPy and CUDA paths give the CPU's results, and how fast
are they? In one run (under 8 minutes on an H100/H200):

1. the ``gpu``-marked tests (CuPy input to ``pseudo_labels`` equals NumPy input, the
   histogram pass keeps CuPy chunks on the GPU, ``predict`` on CuPy agrees with fp32,
   the strong augmentation on the device);
2. figures, as JSON:
   - pure-network inference of ``unet2d`` f0 16 2.5D (context 7): fp32, bf16, bf16
     with ``channels_last``, and bf16 + ``torch.compile`` (output Gvox/s);
   - ``xd.predict`` Zarr → Zarr end to end on one GPU worker (``LocalCUDACluster``
     when dask-cuda is installed, else a one-worker ``LocalCluster``): Gvox/s and its
     ratio to the pure network;
   - ``pseudo_labels`` on CuPy data (Gvox/s);
   - stage-2 training steps/s, and the sampler's patches/s from Zarr with a lazy
     pseudo-label target;
   - DenseUSeg 3-D inference (Mvox/s);
   - peak GPU memory of each.

``--cpu`` runs the same script on tiny sizes without a GPU (CI does, so it cannot
rot): its figures are CPU figures and say so.

Run:  python benchmarks/gpu.py --out results/         (on the GPU machine)
      python benchmarks/gpu.py --cpu --out /tmp/gpu   (anywhere)
Results: OUT/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

SIZES = {  # (gpu, cpu)
    "tile": (512, 64),
    "batch": (16, 2),
    "repeats": (20, 2),
    "volume": ((256, 1024, 1024), (16, 128, 128)),
    "chunks": ((64, 512, 512), (8, 64, 64)),
    "pseudo": ((512, 1024, 1024), (32, 128, 128)),
    "train_batch": (32, 2),
    "train_patch": (256, 32),
    "train_steps": (30, 2),
    "dense": ((2, 1, 96, 96, 96), (1, 1, 16, 16, 16)),
}


def _size(name: str, cpu: bool):
    return SIZES[name][1 if cpu else 0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _peak(record: dict, device: torch.device):
    """Peak GPU memory of the block (PyTorch's allocator), into ``record``."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    else:
        record["peak_gpu_memory_gib"] = None


def _timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (and compilation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def gpu_tests(out: Path, cpu: bool = False) -> dict:
    """The ``gpu``-marked tests, in a subprocess; their summary line. With ``cpu``
    (where they all skip) only one test file's, to check this step quickly."""
    where = ["tests/test_augment.py"] if cpu else ["tests"]
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *where]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    (out / "gpu_tests.log").write_text(done.stdout + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else ""}


def network(device: torch.device, cpu: bool) -> dict:
    """Pure-network inference of segment's 2.5D U-Net, several precisions."""
    import xctdask as xd

    tile, batch, repeats = _size("tile", cpu), _size("batch", cpu), _size("repeats", cpu)
    net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=7).to(device).eval()
    x = torch.randn(batch, 7, tile, tile, device=device)
    voxels = batch * tile * tile  # output voxels per forward
    results = {}
    variants = [("fp32", torch.float32, False, False)]
    if device.type == "cuda":
        variants += [
            ("bf16", torch.bfloat16, False, False),
            ("bf16_channels_last", torch.bfloat16, True, False),
            ("bf16_channels_last_compile", torch.bfloat16, True, True),
        ]
    for name, dtype, channels_last, compiled in variants:
        record: dict = {}
        model, inp = net, x
        if channels_last:
            model = net.to(memory_format=torch.channels_last)
            inp = x.to(memory_format=torch.channels_last)
        if compiled:
            try:
                model = torch.compile(model)
            except Exception as error:  # report it, do not lose the rest
                results[name] = {"error": repr(error)}
                continue

        def forward(model=model, inp=inp, dtype=dtype):
            with (
                torch.no_grad(),
                torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
            ):
                return model(inp)

        try:
            with _peak(record, device):
                seconds = _timed(forward, repeats, device)
        except Exception as error:
            results[name] = {"error": repr(error)}
            continue
        record["gvox_per_s"] = voxels / seconds / 1e9
        results[name] = record
        print(f"network {name}: {record['gvox_per_s']:.3f} Gvox/s", flush=True)
    return {"tile": tile, "batch": batch, "context": 7, "variants": results}


@contextmanager
def _cluster(device: torch.device):
    from distributed import Client, LocalCluster

    if device.type == "cuda":
        try:
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=1, dashboard_address=None)
            kind = "LocalCUDACluster, 1 GPU worker"
        except ImportError:
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
            kind = "LocalCluster, 1 worker (dask-cuda not installed)"
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)
        kind = "LocalCluster, 1 worker x 2 threads (CPU)"
    client = Client(cluster)
    try:
        yield client, kind
    finally:
        client.close()
        cluster.close()


def predict_zarr(device: torch.device, cpu: bool, work: Path, pure: float | None) -> dict:
    import xctdask as xd

    shape, chunks = _size("volume", cpu), _size("chunks", cpu)
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 0.3, size=shape).astype(np.float32)
    xd.save_volume(data, work / "in.zarr", chunks=chunks, progress=False)
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=7)
    precision = "bf16" if device.type == "cuda" else "fp32"
    record: dict = {"shape": list(shape), "chunks": list(chunks), "precision": precision}
    with _cluster(device) as (client, kind), _peak(record, device):
        record["cluster"] = kind
        vol = xd.open_volume(work / "in.zarr")
        labels = xd.predict(vol, net, tile=_size("tile", cpu), precision=precision)
        start = time.perf_counter()
        xd.save_volume(labels, work / "out.zarr", progress=False)
        seconds = time.perf_counter() - start
        # the worker, not this process, holds the GPU memory of predict
        if device.type == "cuda":
            record["worker_peak_gpu_memory_gib"] = client.run(
                lambda: torch.cuda.max_memory_allocated() / 2**30
            )
    record["gvox_per_s"] = int(np.prod(shape)) / seconds / 1e9
    if pure:
        record["ratio_to_pure_network"] = record["gvox_per_s"] / pure
    # CPU fp32 agreement on one slab
    if device.type == "cuda":
        ref = xd.predict(
            xd.open_volume(work / "in.zarr")[:16],
            net,
            tile=_size("tile", cpu),
            precision="fp32",
            device="cpu",
        ).values
        got = xd.open_volume(work / "out.zarr")[:16].values
        record["labels_equal_to_cpu_fp32"] = float((ref == got).mean())
    print(f"predict Zarr -> Zarr: {record['gvox_per_s']:.3f} Gvox/s", flush=True)
    return record


def pseudo_labels(device: torch.device, cpu: bool) -> dict:
    import dask.array as da

    import xctdask as xd

    shape = _size("pseudo", cpu)
    record: dict = {"shape": list(shape)}
    if device.type == "cuda":
        import cupy

        data = cupy.random.default_rng(0).normal(1.0, 0.3, size=shape, dtype=cupy.float32)
        record["array"] = "cupy"
    else:
        data = np.random.default_rng(0).normal(1.0, 0.3, size=shape).astype(np.float32)
        record["array"] = "numpy"
    vol = da.from_array(data, chunks=(64, 512, 512), asarray=False)
    with _peak(record, device):
        start = time.perf_counter()
        labels = xd.pseudo_labels(vol, 3, mask=None)
        labels.compute(scheduler="threads")
        seconds = time.perf_counter() - start
    record["gvox_per_s"] = int(np.prod(shape)) / seconds / 1e9
    print(f"pseudo_labels: {record['gvox_per_s']:.3f} Gvox/s", flush=True)
    return record


def training(device: torch.device, cpu: bool, work: Path) -> dict:
    import xctdask as xd

    batch, patch, steps = (
        _size("train_batch", cpu),
        _size("train_patch", cpu),
        _size("train_steps", cpu),
    )
    ds = xd.phantoms.make("fibre-composite", (32, 2 * patch, 2 * patch), seed=0)
    xd.save_volume(ds.lq.astype(np.float32), work / "lq.zarr", progress=False)
    vol = xd.open_volume(work / "lq.zarr")
    pseudo = xd.PseudoLabeler(3).fit(vol).predict(vol)
    record: dict = {"batch": batch, "patch": [7, patch, patch]}
    with _cluster(torch.device("cpu")) as (_, kind):
        sampler = xd.PatchSampler(
            vol,
            pseudo,
            patch=(1, patch, patch),
            context=7,
            margin=2,
            split=(1, 0, 0),
            normalize=(1.0, 0.3),
        )
        stream = sampler.batches("train", batch)
        next(stream)
        start = time.perf_counter()
        for _ in range(steps):
            next(stream)
        record["sampler_patches_per_s"] = steps * batch / (time.perf_counter() - start)
        stream.close()
        net = xd.models.build("unet2d", 1, 3, depth=4, f0=16, context=7)
        with _peak(record, device):
            start = time.perf_counter()
            xd.train(
                net,
                sampler,
                steps=steps,
                batch_size=batch,
                progress=False,
                device=str(device),
                val_every=10**9,
            )
            record["steps_per_s"] = steps / (time.perf_counter() - start)
        record["sampler_cluster"] = kind
    print(
        f"training: {record['steps_per_s']:.2f} steps/s, sampler "
        f"{record['sampler_patches_per_s']:.0f} patches/s",
        flush=True,
    )
    return record


def denseuseg(device: torch.device, cpu: bool) -> dict:
    import xctdask as xd

    shape = _size("dense", cpu)
    net = xd.models.build("denseuseg", 1, 3).to(device).eval()
    x = torch.randn(*shape, device=device)
    record: dict = {"input": list(shape)}
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def forward():
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            return net(x)

    with _peak(record, device):
        seconds = _timed(forward, _size("repeats", cpu), device)
    record["mvox_per_s"] = int(np.prod(shape)) / seconds / 1e6
    print(f"DenseUSeg 3-D: {record['mvox_per_s']:.1f} Mvox/s", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes, no GPU needed")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --cpu for the CPU check")
    device = torch.device("cpu" if args.cpu else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="xctdask-gpu-"))
    report: dict = {
        "mode": "cpu (tiny sizes: not GPU figures)" if args.cpu else "gpu",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    start = time.perf_counter()
    steps = [
        (
            "gpu_tests",
            lambda: gpu_tests(args.out, args.cpu) if not args.skip_tests else {"skipped": True},
        ),
        ("network", lambda: network(device, args.cpu)),
    ]
    try:
        for name, step in steps:
            report[name] = step()
        best = max(
            (v.get("gvox_per_s", 0) for v in report["network"]["variants"].values()), default=0
        )
        for name, step in (
            ("predict_zarr", lambda: predict_zarr(device, args.cpu, work, best)),
            ("pseudo_labels", lambda: pseudo_labels(device, args.cpu)),
            ("training", lambda: training(device, args.cpu, work)),
            ("denseuseg_3d", lambda: denseuseg(device, args.cpu)),
        ):
            try:
                report[name] = step()
            except Exception as error:  # report it, do not lose the rest
                report[name] = {"error": repr(error)}
                print(f"{name}: FAILED {error!r}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        report["seconds"] = round(time.perf_counter() - start, 1)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    failed = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
