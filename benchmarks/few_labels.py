"""Few annotated slices: the library's Segmenter against a random forest, per class.

Question: with 1, 3 or 10 annotated slices, does ``xd.Segmenter`` beat what ilastik
users get in minutes, a random forest on multiscale filter features
(``xd.metrics.ForestBaseline``: scikit-image ``multiscale_basic_features`` +
scikit-learn ``RandomForestClassifier``)? Goal (issue 20): Segmenter ≥ forest + 5 mIoU
points at 3 and 10 slices, on real data. Also shown: Bin-ZeroOC and ZeroOC (from the
test slices' own labels: references, not methods).

Data sets:

* ``battery`` (real): 21 nano-CT slices of a battery electrode with manual 3-phase
  labels (``../shared/data/battery``, Apache-2.0). Four acquisitions of different sizes:
  every slice is centre-cropped to 400×400, and each acquisition is standardised by its
  own mean and std (no labels used). The slices are unrelated 2-D images, so the
  Segmenter runs with ``stack="slices"``. Test slices: 2 per acquisition (8), never
  trained on; training slices are drawn from the other 13, spread over acquisitions.
* ``phantom`` (synthetic): the library's fibre-composite phantom, LQ scan, 48×192×192;
  annotated slices contiguous in the middle of the first 70 % of z, test = the last 30 %
  (2.5D context 3).

* ``transfer`` (HQ → LQ, synthetic): the 4-D-series use. The fibre-composite phantom
  (48×192×192) with 10 annotated slices of its HQ scan: the Segmenter fitted on the HQ
  scan is scored on the test slices of the HQ scan and of the LQ scan; then fitted on
  the HQ scan with ``like=lq`` (HQ patches degraded to the LQ scan's measured noise);
  and, as the ceiling, fitted on the aligned LQ scan itself. The forest fitted on HQ is
  shown on both. Goal (issue 20): HQ → LQ within 10 points of HQ.

Run:  python benchmarks/few_labels.py [--steps 300] [--data ../shared/data]
Results: benchmarks/results/few_labels.json (and a table on stdout)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import xctdask as xd

RESULTS = Path(__file__).parent / "results"
COUNTS = (1, 3, 10)
PHANTOM = (48, 192, 192)  # the phantom and transfer parts' volume


def _phantom_slices(nz: int, k: int) -> tuple[list[int], list[int]]:
    """The phantom part's ``k`` annotated slices (the middle of the training range) and
    test slices (the last 30 %); one slice between the two ranges is left out."""
    n_test = round(0.3 * nz)
    n_train = nz - n_test - 1
    if k > n_train:
        raise ValueError(f"the phantom has {n_train} training slices, {k} were asked for")
    first = (n_train - k) // 2
    return list(range(first, first + k)), list(range(nz - n_test, nz))


def load_battery(folder: Path, size: int = 400):
    import tifffile

    names = sorted(
        (int(p.stem) for p in folder.glob("*.tif") if not p.stem.endswith("_label")),
    )
    images, labels, groups = [], [], []
    for n in names:
        img = tifffile.imread(folder / f"{n}.tif").astype(np.float32)
        lab = tifffile.imread(folder / f"{n}_label.tif").astype(np.uint8)
        y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        images.append(img[y0 : y0 + size, x0 : x0 + size])
        labels.append(lab[y0 : y0 + size, x0 : x0 + size])
        groups.append(img.shape)
    keys = sorted(set(groups))
    group = np.array([keys.index(g) for g in groups])
    image = np.stack(images)
    for g in range(len(keys)):  # each acquisition on one scale, from its own voxels
        sel = group == g
        image[sel] = (image[sel] - image[sel].mean()) / image[sel].std()
    return image, np.stack(labels), group, names


def battery_splits(group: np.ndarray, seed: int = 0):
    rng = np.random.default_rng(seed)
    test, pool = [], []
    for g in np.unique(group):
        members = rng.permutation(np.flatnonzero(group == g))
        test += members[:2].tolist()
        pool.append(members[2:].tolist())
    order = []  # round-robin over acquisitions: k slices spread as evenly as possible
    while any(pool):
        for members in pool:
            if members:
                order.append(members.pop(0))
    return sorted(test), order


def per_class(pred: np.ndarray, truth: np.ndarray, n: int) -> dict:
    iou = np.asarray(xd.metrics.iou(pred, truth, n_classes=n), dtype=float)
    return {"mean_iou": round(float(np.nanmean(iou)), 4), "iou": [round(float(v), 4) for v in iou]}


def run(name, image, truth, train_sets, test, args, segmenter_options) -> dict:
    n = 3
    out: dict = {"shape": list(image.shape), "test_slices": test, "runs": []}
    out["zero_oc"] = per_class(
        np.full_like(truth[test], np.bincount(truth[test].ravel()).argmax()), truth[test], n
    )
    b = xd.metrics.bin_zero_oc(image[test], truth[test], n)
    out["bin_zero_oc"] = {"mean_iou": round(b.mean_iou, 4), "iou": np.round(b.iou, 4).tolist()}
    for train in train_sets:
        sparse = np.full_like(truth, 255)
        sparse[train] = truth[train]
        t0 = time.perf_counter()
        forest = xd.metrics.ForestBaseline(seed=args.seed).fit(image, sparse, n)
        rf = per_class(forest.predict(image[test]), truth[test], n)
        t_rf = time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = xd.Segmenter(n, steps=args.steps, seed=args.seed, progress=False,
                               **segmenter_options).fit(image, sparse)  # fmt: skip
        pred = seg.transform(image).values[test]
        net = per_class(pred, truth[test], n)
        t_net = time.perf_counter() - t0
        flipped = per_class(seg.transform(image, flips=True).values[test], truth[test], n)
        row = {
            "annotated": len(train),
            "train_slices": list(map(int, train)),
            "segmenter": net,
            "segmenter_flips": flipped,
            "forest": rf,
            "gain_points": round(100 * (net["mean_iou"] - rf["mean_iou"]), 1),
            "seconds": {"segmenter": round(t_net, 1), "forest": round(t_rf, 1)},
        }
        out["runs"].append(row)
        print(
            f"{name:8} {len(train):3} slices  segmenter {net['mean_iou']:.3f} {net['iou']}  "
            f"with flips {flipped['mean_iou']:.3f}  "
            f"forest {rf['mean_iou']:.3f} {rf['iou']}  gain {row['gain_points']:+.1f}  "
            f"({t_net:.0f} s / {t_rf:.0f} s)",
            flush=True,
        )
    return out


def transfer(args, k: int = 10) -> dict:
    """Fit on the library phantom's HQ scan (k annotated slices), segment its LQ scan."""
    ds = xd.phantoms.make("fibre-composite", PHANTOM, seed=args.seed)
    return transfer_on(ds.hq.values, ds.lq.values, ds.labels.values, args, k)


def transfer_on(hq, lq, truth, args, k: int = 10, name: str = "transfer") -> dict:
    """HQ → LQ on aligned scans with their truth (3 classes).

    The Segmenter (context 3, ``args.steps``) fitted on ``k`` annotated HQ slices, on
    the HQ scan with ``like=lq``, and on the LQ scan itself (the ceiling); each scored
    on the test slices (the last 30 % of z) of both scans; the forest fitted on HQ too.
    """
    n = 3
    train, test = _phantom_slices(hq.shape[0], k)
    sparse = np.full_like(truth, 255)
    sparse[train] = truth[train]
    out: dict = {"shape": list(hq.shape), "annotated": k, "test_slices": test}
    forest = xd.metrics.ForestBaseline(seed=args.seed).fit(hq, sparse, n)
    out["forest_hq_on_hq"] = per_class(forest.predict(hq[test]), truth[test], n)
    out["forest_hq_on_lq"] = per_class(forest.predict(lq[test]), truth[test], n)
    fits = {"hq": (hq, None), "hq_like_lq": (hq, lq), "lq_aligned": (lq, None)}
    for fit_name, (source, like) in fits.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = xd.Segmenter(n, steps=args.steps, seed=args.seed, progress=False, context=3)
            seg.fit(source, sparse, like=like)
        row = {"seconds": None, "degrade_sigma": round(seg.degrade_sigma_, 4)}
        for scan_name, scan in (("hq", hq), ("lq", lq)):
            row[f"on_{scan_name}"] = per_class(seg.transform(scan).values[test], truth[test], n)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out[f"segmenter_{fit_name}"] = row
        print(
            f"{name} fit on {fit_name:11} on HQ {row['on_hq']['mean_iou']:.3f} "
            f"on LQ {row['on_lq']['mean_iou']:.3f} {row['on_lq']['iou']} "
            f"(noise added {row['degrade_sigma']}, {row['seconds']:.0f} s)",
            flush=True,
        )
    print(
        f"{name} forest on HQ {out['forest_hq_on_hq']['mean_iou']:.3f} "
        f"on LQ {out['forest_hq_on_lq']['mean_iou']:.3f}",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(Path(__file__).parents[2] / "shared" / "data"))
    parser.add_argument("--only", choices=["battery", "phantom", "transfer"])
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        default=list(COUNTS),
        help="annotated slices per run (battery: 13 is its whole training pool)",
    )
    parser.add_argument("--out", default=str(RESULTS / "few_labels.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    report: dict = {"steps": args.steps, "seed": args.seed, "machine": "2 cores, no GPU"}
    if args.only in (None, "phantom"):
        try:  # before any work
            _phantom_slices(PHANTOM[0], max(args.counts))
        except ValueError as error:
            parser.error(f"--counts: {error}")
    if args.only in (None, "battery"):
        image, truth, group, names = load_battery(Path(args.data) / "battery")
        test, order = battery_splits(group, args.seed)
        if max(args.counts) > len(order):
            parser.error(f"--counts: the battery's training pool has {len(order)} slices")
        sets = [sorted(order[:k]) for k in args.counts]
        report["battery"] = run("battery", image, truth, sets, test, args, {"stack": "slices"})
        report["battery"]["slice_names"] = names
    if args.only in (None, "phantom"):
        ds = xd.phantoms.make("fibre-composite", PHANTOM, seed=args.seed)
        image, truth = ds.lq.values, ds.labels.values
        sets = [_phantom_slices(image.shape[0], k)[0] for k in args.counts]
        test = _phantom_slices(image.shape[0], 1)[1]
        report["phantom"] = run("phantom", image, truth, sets, test, args, {"context": 3})
    if args.only in (None, "transfer"):
        report["transfer"] = transfer(args)
    out = Path(args.out)
    if args.only and out.exists():  # one part rerun: the other parts' results stay
        report = {**json.loads(out.read_text()), **report}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
