"""Forward throughput of every model in the zoo, with FLOPs per voxel next to it.

Question: how many voxels per second does each network segment (forward pass,
inference mode), and what does a voxel cost in FLOPs? The FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the same input (a multiply-add counts
as 2 FLOPs; convolutions and matrix products only, which dominate).

Configurations are the papers' sizes: the 2.5D U-Net of about 2 M parameters that the
SR-CT pseudo-label paper compares at (depth 4, f0 16, 5 slices), the default Modular
U-Net (f0 32), a 3D U-Net, DenseUSeg and Stacked-DenseUSeg with k0 = 32 and g = 64, and
the Pix2Pix generator. Inputs: 256×256 slices for 2D networks, 64³ patches for 3D
ones (one patch per batch for the DenseUSegs on CPU, which are heavy).

On CPU the timing is fp32 with all cores (``torch.get_num_threads()``). Where a CUDA
GPU is present, every model is also timed in fp32 and in bf16 autocast, both with
``channels_last`` memory format, after a warm-up, with CUDA synchronisation.

Run:  python benchmarks/models.py            (all models; a few minutes on 2 cores)
      python benchmarks/models.py --quick    (smaller inputs, one repeat)
Results: benchmarks/results/models.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from xctdask import models

RESULTS = Path(__file__).parent / "results"

CONFIGS = [
    # label, registry name, options, batch (CPU), spatial size
    (
        "unet2d 2.5D ~2M (depth 4, f0 16, context 5)",
        "unet2d",
        {"depth": 4, "f0": 16, "context": 5},
        8,
        (256, 256),
    ),
    (
        "unet2d 2.5D ~2M, skip=False",
        "unet2d",
        {"depth": 4, "f0": 16, "context": 5, "skip": False},
        8,
        (256, 256),
    ),
    ("unet2d default (depth 4, f0 32)", "unet2d", {}, 4, (256, 256)),
    ("unet3d (depth 4, f0 16)", "unet3d", {"depth": 4, "f0": 16}, 1, (64, 64, 64)),
    ("denseuseg 3D (k0 32, g 64)", "denseuseg", {}, 1, (64, 64, 64)),
    ("denseuseg2d (k0 32, g 64)", "denseuseg2d", {}, 4, (256, 256)),
    ("stacked-denseuseg 3D", "stacked-denseuseg", {}, 1, (64, 64, 64)),
    ("pix2pix generator (depth 4, f0 32)", "pix2pix", {}, 4, (256, 256)),
]


def _input(net, batch: int, size, device, dtype=torch.float32):
    channels = net.config["in_channels"] * net.config.get("context", 1)
    return torch.randn(batch, channels, *size, device=device, dtype=dtype)


def flops_per_voxel(net, size) -> float:
    x = _input(net, 1, size, "cpu")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(x)
    return counter.get_total_flops() / float(torch.tensor(size).prod())


def throughput(net, batch, size, device, repeats, *, bf16=False, channels_last=False) -> float:
    x = _input(net, batch, size, device)
    if channels_last:
        fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        net = net.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)

    def run():
        with torch.inference_mode(), autocast:
            net(x)
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return batch * float(torch.tensor(size).prod()) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small inputs, one repeat")
    parser.add_argument("--out", type=Path, default=RESULTS / "models.json")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    gpu = torch.cuda.is_available()
    report = {
        "machine": platform.platform(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "models": [],
    }
    for label, name, options, batch, size in CONFIGS:
        if args.quick:
            size = tuple(max(16, s // 4) for s in size)
        torch.manual_seed(0)
        net = models.build(name, 1, 4, **options).eval()
        entry = {
            "model": label,
            "name": name,
            "options": options,
            "parameters": net.n_parameters,
            "halo": list(net.halo),
            "input": [batch, *size],
            "gflops_per_voxel_x1e3": None,
        }
        fpv = flops_per_voxel(net, size)
        entry["flops_per_voxel"] = round(fpv)
        entry["cpu_fp32_voxels_per_s"] = throughput(net, batch, size, "cpu", repeats)
        print(
            f"{label:48s} {net.n_parameters / 1e6:6.2f} M params  {fpv / 1e3:9.1f} kFLOP/voxel  "
            f"CPU {entry['cpu_fp32_voxels_per_s'] / 1e6:7.3f} Mvox/s",
            flush=True,
        )
        if gpu:
            net = net.cuda()
            gpu_batch = batch * 4
            entry["gpu_batch"] = gpu_batch
            entry["gpu_fp32_channels_last_voxels_per_s"] = throughput(
                net, gpu_batch, size, "cuda", repeats, channels_last=True
            )
            entry["gpu_bf16_channels_last_voxels_per_s"] = throughput(
                net, gpu_batch, size, "cuda", repeats, bf16=True, channels_last=True
            )
            print(
                f"{'':48s} GPU fp32 {entry['gpu_fp32_channels_last_voxels_per_s'] / 1e6:8.1f} "
                f"Mvox/s, bf16 {entry['gpu_bf16_channels_last_voxels_per_s'] / 1e6:8.1f} Mvox/s",
                flush=True,
            )
        del entry["gflops_per_voxel_x1e3"]
        report["models"].append(entry)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
