"""The whole pipeline, end to end: time per stage, memory, and how good the labels are.

Questions and goals (CPU, 2 cores; every figure printed and saved):

* per phantom size: wall time of each stage (phantom, pseudo labels, stage 2, stage 3,
  inference), peak memory per Dask worker and of the training process;
* mIoU and per-class IoU against the truth on the LQ scan of the fibre-composite
  phantom: pseudo labels, stage 2, stage 3 (unsupervised) for each ``--class-keep``
  value (default: the paper's plain threshold, 0, and ``xd.Segmenter``'s default);
  supervised with 10 annotated slices and with full labels; next to Multi-Otsu
  (scikit-image, in memory) and the Bin-ZeroOC ceiling of intensity-only
  classification. Goals, judged on the Segmenter's default: stage 3 ≥ pseudo labels +
  10 points and not below stage 2; 10 annotated slices within 5 points of full labels;
* the stacked denoise+segment network against the same network without its denoising
  half (``denseuseg2d``), both trained on the LQ scan with the truth (and the HQ scan
  as the denoising target), both at lr 1e-3 with the same class-weighted cross entropy
  (the stacked network's default); the stacked one also at the paper's 10:1
  ratio of denoiser to segmenter learning rate; PSNR/SSIM of the denoised output.
  Goal: stacked beats segment-only on LQ input;
* the unsupervised pipeline on the real volumes in ``../shared/data`` (qim3d fibres,
  bone, shell; sand; the tooth reconstructed from its projections): no ground truth, so
  a montage each, agreement with Multi-Otsu and the fraction of voxels stage 3 changed.

Set-up: a LocalCluster of 2 worker processes × 1 thread; ``unet2d`` (depth 3, f0 16,
2.5D with 3 slices, no skips) on 64×64 patches, batch 8; stage 2 ``--steps``, stage 3
``--steps3`` (threshold 0.9, EMA 0.999, once per ``--class-keep``; on the real volumes
the paper's plain threshold), supervised runs ``--steps``; inference with ``xd.predict``
(tile = the volume's width, overlap 0.5). With ``--no-real``, the real volumes' results
already in ``--out`` are kept; ``--only-stacked`` reruns only the stacked comparison
into ``--out``. Figures:
``benchmarks/results/end_to_end*.png``.

Run:  python benchmarks/end_to_end.py            (64×256×256 and 128×512×512 and the real
                                                  volumes; with --no-real 66 minutes on
                                                  2 cores, 2026-11-30)
      python benchmarks/end_to_end.py --sizes 64 256 256 --no-real     (about 20 minutes)
Results: benchmarks/results/end_to_end.json
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import threading
import time
from pathlib import Path

import numpy as np
import torch
from _stage3 import add_class_keep_argument, judged_variant, variant
from distributed import Client, LocalCluster
from skimage.filters import threshold_multiotsu

import xctdask as xd

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NET = {"depth": 3, "f0": 16, "context": 3, "skip": False}


class PeakMemory:
    """Polls the scheduler for each worker's memory; keeps the maximum seen."""

    def __init__(self, client: Client, every: float = 0.25):
        self.client, self.every, self.peak = client, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for address, info in self.client.scheduler_info()["workers"].items():
                used = info.get("metrics", {}).get("memory", 0)
                self.peak[address] = max(self.peak.get(address, 0), used)
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Clock:
    def __init__(self):
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()
                print(f"  {name} …", flush=True)

            def __exit__(self, *exc):
                clock.times[name] = round(time.perf_counter() - self.start, 1)

        return _Stage()


def infer(net, vol: np.ndarray, batch: int = 4) -> np.ndarray:
    return xd.predict(vol, net, tile=vol.shape[-1], batch_size=batch).values


def miou(labels: np.ndarray, truth: np.ndarray, where: np.ndarray, n: int) -> float:
    return round(float(xd.metrics.mean_iou(labels[where], truth[where], n_classes=n)), 4)


def class_iou(labels: np.ndarray, truth: np.ndarray, where: np.ndarray, n: int) -> list:
    """Per-class IoU (truth's class order), rounded; ``None`` for a class absent from both."""
    iou = np.asarray(xd.metrics.iou(labels[where], truth[where], n_classes=n), dtype=float)
    return [None if np.isnan(v) else round(float(v), 4) for v in iou]


def train_unet(vol, target, args, steps, n, norm, **sampler_options):
    sampler_options.setdefault("split", (0.8, 0.2, 0.0))
    sampler = xd.PatchSampler(
        vol,
        target,
        patch=(1, 64, 64),
        context=NET["context"],
        normalize=norm,
        n_classes=n,
        seed=args.seed,
        **sampler_options,
    )
    torch.manual_seed(args.seed)
    net = xd.models.build("unet2d", 1, n, **NET)
    return xd.train(net, sampler, steps=steps, lr=3e-3, val_every=100, progress=False), sampler


def make_phantom(shape: tuple[int, int, int], args, clock: Clock) -> dict:
    """The LQ/HQ fibre-composite phantom of ``shape`` with its truth, k-means pseudo
    labels, field of view (``inside``), normalisation and class names."""
    n = 3
    with clock("phantom"):
        ds = xd.phantoms.make("fibre-composite", shape, seed=args.seed, lazy=True).persist()
        lq, hq, truth = ds.lq.values, ds.hq.values, ds.labels.values
    with clock("pseudo labels"):
        labeler = xd.PseudoLabeler(n, "kmeans", mask="cylinder").fit(ds.lq)
        pseudo = labeler.predict(ds.lq).values
    inside = pseudo != 255
    return {
        "lq": lq,
        "hq": hq,
        "truth": truth,
        "pseudo": pseudo,
        "inside": inside,
        "norm": (float(lq[inside].mean()), float(lq[inside].std())),
        "classes": list(ds.attrs.get("class_names", range(n))),
    }


def stacked_run(shape: tuple[int, int, int], args) -> tuple[dict, dict]:
    """Only the stacked vs segment-only comparison on the phantom of ``shape``."""
    clock = Clock()
    p = make_phantom(shape, args, clock)
    stacked = stacked_vs_segment_only(
        p["lq"], p["hq"], p["truth"], p["inside"], p["norm"], args, clock
    )
    return stacked, clock.times


def phantom_run(shape: tuple[int, int, int], args) -> dict:
    clock, report = Clock(), {"shape": list(shape)}
    p = make_phantom(shape, args, clock)
    lq, hq, truth, pseudo, inside, norm = (
        p[k] for k in ("lq", "hq", "truth", "pseudo", "inside", "norm")
    )
    n = len(p["classes"])
    mapping = xd.metrics.match_labels(pseudo, np.where(inside, truth, 255), n, n)
    matched = xd.metrics.apply_mapping
    judged = judged_variant(args.class_keep)
    scores = {}
    otsu = np.digitize(lq, threshold_multiotsu(lq[inside], classes=n)).astype(np.uint8)
    otsu_map = xd.metrics.match_labels(otsu, np.where(inside, truth, 255), n, n)
    hist = xd.metrics.joint_histogram(lq[inside], truth[inside], n)
    bin_zero_oc = xd.metrics.bin_zero_oc_from_histogram(hist)
    scores["bin_zero_oc"] = round(bin_zero_oc.mean_iou, 4)
    bound = xd.metrics.intensity_iou_bound_from_histogram(hist)
    scores["intensity_iou_bound"] = round(bound.mean_iou, 4)
    per_class = {"bin_zero_oc": [round(float(v), 4) for v in bin_zero_oc.iou]}

    def score(name: str, labels: np.ndarray) -> None:
        scores[name] = miou(labels, truth, inside, n)
        per_class[name] = class_iou(labels, truth, inside, n)

    score("pseudo_labels", matched(pseudo, mapping))
    score("multi_otsu", matched(otsu, otsu_map))
    with clock("stage 2"):
        net, sampler = train_unet(lq, pseudo, args, args.steps, n, norm)
    with clock("inference (stage 2)"):
        labels2 = infer(net, lq)
    score("stage2", matched(labels2, mapping))
    stage2 = copy.deepcopy(net.state_dict())
    changed, final = {}, None
    for keep in args.class_keep:
        key = variant(keep)
        net.load_state_dict(stage2)
        with clock(f"stage 3 ({key})"):
            teacher = xd.self_correct(
                net, sampler, steps=args.steps3, class_keep=keep, progress=False
            )
        with clock(f"inference ({key})"):
            labels3 = infer(teacher, lq)
        score(key, matched(labels3, mapping))
        changed[key] = round(float((labels3 != labels2)[inside].mean()), 4)
        if key == judged or final is None:
            final = labels3
    report["stage3_changed_fraction"] = changed
    sparse = np.full_like(truth, 255)
    annotated = np.linspace(0, shape[0] - 1, 12).round().astype(int)[1:-1]  # 10 slices
    sparse[annotated] = truth[annotated]
    with clock("supervised, 10 slices"):
        net10, _ = train_unet(lq, sparse, args, args.steps, n, norm, split=(1.0, 0.0, 0.0))
        score("supervised_10_slices", infer(net10, lq))
    with clock("supervised, full labels"):
        net_full, _ = train_unet(lq, truth, args, args.steps, n, norm)
        score("supervised_full", infer(net_full, lq))
    report["miou"] = scores
    report["classes"] = p["classes"]
    report["iou_per_class"] = per_class
    stage3 = scores[judged]
    report["goals"] = {
        "judged_on": judged,
        "stage3_gain_points": round(100 * (stage3 - scores["pseudo_labels"]), 1),
        "stage3_gain_met": stage3 - scores["pseudo_labels"] >= 0.10,
        "stage3_minus_stage2_points": round(100 * (stage3 - scores["stage2"]), 1),
        "stage3_not_below_stage2": stage3 >= scores["stage2"],
        "ten_slices_gap_points": round(
            100 * (scores["supervised_full"] - scores["supervised_10_slices"]), 1
        ),
        "ten_slices_met": scores["supervised_full"] - scores["supervised_10_slices"] <= 0.05,
    }
    report["stacked"] = stacked_vs_segment_only(lq, hq, truth, inside, norm, args, clock)
    report["seconds"] = clock.times
    report["_labels"] = (lq, truth, matched(pseudo, mapping), matched(final, mapping))
    return report


def stacked_vs_segment_only(lq, hq, truth, inside, norm, args, clock) -> dict:
    n, small = 3, {"k0": 16, "growth": 16, "n_blocks": 3, "modules_per_block": 2}
    hq_norm = (float(hq[inside].mean()), float(hq[inside].std()))
    clean = (hq - hq_norm[0]) / hq_norm[1] * norm[1] + norm[0]  # HQ on the LQ scale
    sampler = xd.PatchSampler(
        lq, truth, clean=clean, patch=(1, 64, 64), normalize=norm, seed=args.seed
    )
    out = {}
    runs = (
        ("segment_only", "denseuseg2d", None),
        ("stacked", "stacked-denseuseg", 1e-3),  # the segmenting half at the same lr
        ("stacked_paper_lr", "stacked-denseuseg", 1e-4),  # the paper's 10:1 ratio
    )
    for name, kind, lr_segment in runs:
        torch.manual_seed(args.seed)
        options = dict(small, dims=2) if kind == "stacked-denseuseg" else small
        net = xd.models.build(kind, 1, n, **options)
        extra = {} if lr_segment is None else {"lr_segment": lr_segment}
        with clock(f"{name} ({kind})"):
            net = xd.train(
                net,
                sampler,
                steps=args.steps_stacked,
                lr=1e-3,
                class_weights=True,  # the same loss for all: the stacked network's default
                progress=False,
                **extra,
            )
            labels = infer(net, lq)
        out[f"{name}_miou"] = miou(labels, truth, inside, n)
        out[f"{name}_iou_per_class"] = class_iou(labels, truth, inside, n)
        if name == "stacked":
            # predict gives the denoised volume in the LQ scan's grey values
            denoised = xd.predict(lq, net, output="denoised", tile=lq.shape[-1]).values
            denoised = (denoised - norm[0]) / norm[1] * hq_norm[1] + hq_norm[0]
            reference = hq[:, inside.any(0)]
            rng = float(reference.max() - reference.min())
            for label, image in (("lq", lq), ("denoised", denoised)):
                part = image[:, inside.any(0)]
                out[f"psnr_{label}_vs_hq"] = round(
                    float(xd.metrics.psnr(part, reference, data_range=rng)), 2
                )
                out[f"ssim_{label}_vs_hq"] = round(
                    float(xd.metrics.ssim(image, hq, data_range=rng)), 4
                )
    out["stacked_beats_segment_only"] = out["stacked_miou"] > out["segment_only_miou"]
    out["loss"] = "class-weighted cross entropy (the paper's weights) for all three"
    return out


def real_volumes(args) -> dict:
    """name → volume, read from ../shared/data (the tooth reconstructed)."""
    import tifffile

    out = {}
    if not SHARED.is_dir():
        return out
    for name in ("fibers_150x150x150", "bone_128x128x128", "shell_225x128x128"):
        path = SHARED / "qim3d" / f"{name}.tif"
        if path.exists():
            out[name.split("_")[0]] = tifffile.imread(path)
    sand = SHARED / "sand" / "sand_200x200x100_uint8.raw"
    if sand.exists():
        out["sand"] = np.fromfile(sand, np.uint8).reshape(100, 200, 200)
    tooth = SHARED / "tooth" / "tooth.h5"
    if tooth.exists():
        from xctdask.io import open_projections
        from xctdask.phantoms import reconstruct

        out["tooth"] = reconstruct(open_projections(tooth), center=295.5).values
    return out


def real_run(name: str, vol: np.ndarray, args) -> dict:
    n = 3 if name in ("tooth", "shell") else 2
    start = time.perf_counter()
    labeler = xd.PseudoLabeler(n, "kmeans").fit(vol)
    pseudo = labeler.predict(vol)
    otsu = np.digitize(vol, threshold_multiotsu(vol, classes=n)).astype(np.uint8)
    norm = (float(vol.mean()), float(vol.std()))
    flat = vol.shape[0] < 8  # the tooth: two reconstructed rows, a 2-D problem
    options = {"split": (1.0, 0.0, 0.0), "margin": 0} if flat else {}
    context = 1 if flat else 3
    sampler = xd.PatchSampler(
        vol,
        pseudo,
        patch=(1, 64, 64),
        context=context,
        normalize=norm,
        seed=args.seed,
        **options,
    )
    torch.manual_seed(args.seed)
    net = xd.models.build("unet2d", 1, n, **{**NET, "context": context})
    net = xd.train(net, sampler, steps=args.real_steps, lr=3e-3, val_every=100, progress=False)
    labels2 = infer(copy.deepcopy(net), vol)
    teacher = xd.self_correct(net, sampler, steps=args.real_steps3, progress=False)
    labels3 = infer(teacher, vol)
    mapping = xd.metrics.match_labels(labels3, otsu, n, n)
    agree = float((xd.metrics.apply_mapping(labels3, mapping) == otsu).mean())
    xd.viz.montage(
        vol,
        otsu,
        pseudo,
        labels3,
        titles=(name, "Multi-Otsu", "pseudo labels", "stage 3"),
        slices=(0, 1) if flat else 3,
        path=RESULTS / f"end_to_end_real_{name}.png",
    )
    return {
        "shape": list(vol.shape),
        "classes": n,
        "agreement_with_multi_otsu": round(agree, 4),
        "stage3_changed_fraction": round(float((labels3 != labels2).mean()), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["phantoms"]
    methods = list(runs[0]["miou"])
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [run["miou"][m] for m in methods]
        ax.bar(
            np.arange(len(methods)) + i * width,
            values,
            width,
            label="×".join(map(str, run["shape"])),
        )
    ax.set_xticks(
        np.arange(len(methods)) + width * (len(runs) - 1) / 2, methods, rotation=20, ha="right"
    )
    ax.set_ylabel("mIoU vs truth (LQ fibre composite)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "end_to_end.png", dpi=120)


def rerun_stacked(sizes: list[tuple[int, int, int]], args) -> None:
    """Replace the stacked comparison of each size in ``args.out`` by a new run."""
    if not args.out.exists():
        raise SystemExit(f"--only-stacked updates an earlier report: {args.out} does not exist")
    report = json.loads(args.out.read_text())
    runs = {tuple(run["shape"]): run for run in report["phantoms"]}
    missing = [shape for shape in sizes if shape not in runs]
    if missing:
        raise SystemExit(f"--only-stacked: {args.out} has no run of size {missing}")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        for shape in sizes:
            print(f"phantom {shape}: stacked vs segment-only", flush=True)
            stacked, seconds = stacked_run(shape, args)
            runs[shape]["stacked"] = stacked
            kept = ("phantom", "pseudo labels")  # the full run's own timings
            runs[shape]["seconds"].update({k: v for k, v in seconds.items() if k not in kept})
            print(json.dumps(stacked), flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 256, 128, 512, 512])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--steps3", type=int, default=900)
    add_class_keep_argument(parser)
    parser.add_argument("--steps-stacked", type=int, default=300)
    parser.add_argument("--real-steps", type=int, default=200)
    parser.add_argument("--real-steps3", type=int, default=300)
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument(
        "--only-stacked",
        action="store_true",
        help="rerun only the stacked vs segment-only comparison into --out's phantoms",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "end_to_end.json")
    args = parser.parse_args()
    if len(args.sizes) % 3:
        parser.error("--sizes takes Z Y X triples")
    sizes = [tuple(args.sizes[i : i + 3]) for i in range(0, len(args.sizes), 3)]
    RESULTS.mkdir(exist_ok=True)
    if args.only_stacked:
        rerun_stacked(sizes, args)
        return
    report: dict = {"workers": "2 processes × 1 thread", "steps": args.steps, "steps3": args.steps3}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        report["phantoms"] = []
        for shape in sizes:
            print(f"phantom {shape}", flush=True)
            with PeakMemory(client) as memory:
                run = phantom_run(shape, args)
            run["peak_worker_memory_mib"] = {
                str(i): round(v / 2**20) for i, v in enumerate(memory.peak.values())
            }
            run["peak_training_process_mib"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            )
            lq, truth, pseudo, final = run.pop("_labels")
            xd.viz.montage(
                lq,
                truth,
                pseudo,
                final,
                titles=("LQ scan", "truth", "pseudo labels", "stage 3"),
                path=RESULTS / f"end_to_end_montage_{'x'.join(map(str, shape))}.png",
            )
            report["phantoms"].append(run)
            print(json.dumps(run), flush=True)
        if not args.no_real:
            report["real"] = {}
            for name, vol in real_volumes(args).items():
                print(f"real volume {name} {vol.shape}", flush=True)
                report["real"][name] = real_run(name, vol, args)
                print(json.dumps(report["real"][name]), flush=True)
        elif args.out.exists():  # keep the real volumes' last results
            report["real"] = json.loads(args.out.read_text()).get("real", {})
    plot(report)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
