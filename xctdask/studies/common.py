"""What every study shares: the data, the run sizes, fitting, scoring and the result.

A study is a thin script over the library. It takes a volume (a user's scan with its
true labels, or a built-in phantom), trains small networks at a size that fits the
machine (:data:`SIZES`), and returns a :class:`StudyResult`: the numbers (written as
JSON), the figures (PNG) and a one-screen summary.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xctdask._jsonable import dumps, plain
from xctdask.backend import is_number

__all__ = [
    "SIZES",
    "RunSize",
    "StudyData",
    "StudyResult",
    "check_result_free",
    "check_values",
    "fit_network",
    "held_out",
    "load_data",
    "matched_scores",
    "predict_labels",
    "pseudo_labels_of",
    "run_size_of",
    "scores",
    "steps_bar",
]


@dataclass(frozen=True)
class RunSize:
    """How big a study's runs are: the phantom, the networks and their training.

    ``tiny`` runs in seconds (CI), ``small`` in minutes on a 2-core laptop, ``medium``
    wants a GPU or patience.
    """

    shape: tuple[int, int, int]
    steps: int
    steps_self_correct: int
    patch: int
    depth: int
    f0: int
    batch_size: int
    context: int = 3
    lr: float = 3e-3


SIZES: dict[str, RunSize] = {
    "tiny": RunSize((12, 40, 40), steps=3, steps_self_correct=2, patch=32, depth=1, f0=4,
                    batch_size=2),
    "small": RunSize((32, 128, 128), steps=150, steps_self_correct=100, patch=64, depth=2,
                     f0=8, batch_size=8),
    "medium": RunSize((64, 256, 256), steps=600, steps_self_correct=600, patch=128, depth=3,
                      f0=16, batch_size=8),
}  # fmt: skip


@dataclass
class StudyData:
    """A volume to study: the image, its true labels (if any), and their classes."""

    image: np.ndarray
    labels: np.ndarray | None
    n_classes: int
    class_names: list[str]
    source: str
    clean: np.ndarray | None = None

    def require_labels(self, study: str) -> np.ndarray:
        if self.labels is None:
            raise ValueError(
                f"the {study} study scores against true labels: give them with labels= "
                "(--labels on the CLI), or run it on a built-in phantom"
            )
        return self.labels


def _read(source: Any, name: str, storage_options: dict | None) -> np.ndarray:
    from xctdask.io import open_volume

    data = open_volume(source, storage_options=storage_options) if source is not None else None
    if data is None:
        raise ValueError(f"no {name} given")
    if data.ndim != 3:
        raise ValueError(f"the {name} must be a 3-D volume (z, y, x), got {data.ndim} dims")
    return np.asarray(data.data.compute())


def load_data(
    volume: Any = None,
    labels: Any = None,
    *,
    n_classes: int | None = None,
    kind: str = "fibre-composite",
    size: str | RunSize = "small",
    scan: str = "lq",
    seed: int = 0,
    storage_options: dict | None = None,
) -> StudyData:
    """The study's data: ``volume`` and ``labels`` (paths or arrays; **computes**, a
    study's volume fits in memory), or a built-in phantom of ``size``'s shape.

    Examples
    --------
    >>> data = load_data(size="tiny")
    >>> data.image.shape, data.n_classes, data.source
    ((12, 40, 40), 3, 'phantom fibre-composite (12, 40, 40), LQ scan, seed 0')
    """
    run = run_size_of(size)
    if volume is None:
        from xctdask.phantoms import make

        if scan not in ("lq", "hq"):
            raise ValueError(f"scan must be 'lq' or 'hq', got {scan!r}")
        ds = make(kind, run.shape, seed=seed)
        names = [str(n) for n in ds.attrs["class_names"]]
        return StudyData(
            image=np.asarray(ds[scan].values, dtype=np.float32),
            labels=np.asarray(ds.labels.values),
            n_classes=len(names),
            class_names=names,
            source=f"phantom {kind} {run.shape}, {scan.upper()} scan, seed {seed}",
            clean=np.asarray(ds.hq.values, dtype=np.float32),
        )
    if n_classes is not None and (
        isinstance(n_classes, (bool, np.bool_))
        or not isinstance(n_classes, (int, np.integer))
        or not 2 <= n_classes <= 255
    ):
        raise ValueError(f"n_classes must be a whole number in 2..255, got {n_classes!r}")
    image = _read(volume, "volume", storage_options).astype(np.float32, copy=False)
    if not np.isfinite(image).any():
        raise ValueError("the volume holds no finite voxel (all NaN or infinite)")
    truth = None
    if labels is not None:
        truth = _read(labels, "labels", storage_options)
        if truth.shape != image.shape:
            raise ValueError(f"labels of shape {truth.shape} for a volume of shape {image.shape}")
        if not np.issubdtype(truth.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {truth.dtype}")
        lowest, highest = int(truth.min()), int(truth.max())
        if lowest < 0 or highest > 255:
            raise ValueError(
                f"labels must be classes 0..254 and 255 for unlabelled voxels; these hold "
                f"values from {lowest} to {highest}"
            )
        labelled = truth != 255
        if not labelled.any():
            raise ValueError("the labels hold no labelled voxel: every voxel is 255")
        found = int(truth[labelled].max()) + 1
        n_classes = n_classes or max(found, 2)
        if found > n_classes:
            raise ValueError(f"the labels hold class {found - 1}, more than {n_classes} classes")
        truth = truth.astype(np.uint8)
    if n_classes is None:
        raise ValueError("without labels, say how many classes: n_classes=")
    where = volume if isinstance(volume, (str, Path)) else "an array"
    return StudyData(
        image=image,
        labels=truth,
        n_classes=int(n_classes),
        class_names=[str(i) for i in range(int(n_classes))],
        source=f"{where} {image.shape}",
    )


def normalization(image: np.ndarray) -> tuple[float, float]:
    """Global mean and std of the finite voxels (what training and inference use)."""
    finite = image[np.isfinite(image)]
    return float(finite.mean()), float(max(finite.std(), 1e-12))


def fit_network(
    image: np.ndarray,
    target: np.ndarray,
    n_classes: int,
    run: RunSize,
    *,
    model: str = "unet2d",
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    split: tuple[float, float, float] = (1.0, 0.0, 0.0),
    **fit_options: Any,
):
    """Train a small network of the zoo on ``target`` (255 = unlabelled) with
    :func:`xctdask.train`; returns the network and its sampler."""
    from xctdask import models
    from xctdask.sampling import PatchSampler
    from xctdask.train import train

    if model == "unet2d":
        net = models.build(
            "unet2d", 1, n_classes, depth=run.depth, f0=run.f0, context=run.context, skip=False
        )
    elif model == "pix2pix":
        net = models.build("pix2pix", 1, n_classes, depth=run.depth, f0=run.f0)
    else:
        net = models.build(model, 1, n_classes)
    patch = net.suggest_patch(image.shape, run.patch)
    sampler = PatchSampler(
        image,
        target,
        patch=patch,
        context=int(net.context),
        n_classes=n_classes,
        split=split,
        normalize=normalization(image),
        seed=seed,
    )
    options = {"lr": run.lr, "batch_size": run.batch_size} | fit_options
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*validation.*")
        net = train(net, sampler, steps=steps or run.steps, seed=seed, progress=progress, **options)
    return net, sampler


def predict_labels(net: Any, image: np.ndarray, *, output: str = "labels") -> np.ndarray:
    """The network's labels (or ``output``) over ``image``; **computes**."""
    from xctdask.inference import predict

    tile = min(256, max(image.shape[1:]))
    return np.asarray(predict(image, net, output=output, tile=tile).data.compute())


def scores(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Mean IoU, Dice and accuracy with the per-class values next to each mean."""
    from xctdask.metrics import confusion_matrix

    cm = np.asarray(confusion_matrix(pred, truth, n_classes))
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (support + predicted - tp)
        dice = 2 * tp / (support + predicted)
    iou[~present], dice[~present] = np.nan, np.nan
    return {
        "mean_iou": float(np.nanmean(iou)),
        "iou": [None if np.isnan(v) else float(v) for v in iou],
        "mean_dice": float(np.nanmean(dice)),
        "dice": [None if np.isnan(v) else float(v) for v in dice],
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
    }


def pseudo_labels_of(image: np.ndarray, n_classes: int, method: str = "kmeans", mask=None):
    """Stage 1 over the whole image (**computes**), as ``Segmenter.fit`` does."""
    import dask.array as da

    from xctdask.pseudolabels import PseudoLabeler

    labeler = PseudoLabeler(n_classes, method, mask=mask).fit(image)
    (labels,) = da.compute(labeler.predict(da.asarray(image)))
    return np.asarray(labels), labeler


def matched_scores(pred: np.ndarray, truth: np.ndarray, n_pred: int, n_truth: int) -> dict:
    """Scores after mapping predicted classes to true ones (Hungarian, then majority
    for clusters left over), with the mapping."""
    from xctdask.metrics import apply_mapping, match_labels

    mapping = match_labels(pred, truth, n_pred, n_truth)
    mapped = np.asarray(apply_mapping(pred, mapping))
    return {"mapping": mapping.tolist(), **scores(mapped, truth, n_truth)}


def held_out(nz: int, test_fraction: float, context: int) -> tuple[int, slice]:
    """Training slices and the test slab: the last ``test_fraction`` of z is held out,
    and the training part stops a 2.5D context's half before it.

    Examples
    --------
    >>> held_out(20, 0.3, 3)
    (13, slice(14, 20, None))
    """
    if not is_number(test_fraction) or not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must be a number in (0, 1), the share of z held out for "
            f"testing; got {test_fraction!r}"
        )
    n_test = max(1, round(nz * test_fraction))
    n_train = nz - n_test - context // 2
    if n_train < 1:
        raise ValueError(
            f"{nz} slices leave none for training after a {n_test}-slice test slab; give a "
            "longer stack or a smaller test_fraction"
        )
    return n_train, slice(nz - n_test, nz)


def check_values(
    name: str,
    values: Any,
    *,
    low: float,
    high: float = float("inf"),
    integer: bool = False,
) -> list:
    """A study's list option (fractions, slice counts, noise levels) checked before any
    training: at least one value, each a finite number in ``[low, high]`` (a whole
    number if ``integer``), none repeated. Returns the values as a list, in order.

    Examples
    --------
    >>> check_values("fractions", (0.5, 1.0), low=0, high=1)
    [0.5, 1.0]
    >>> check_values("counts", [2, 2], low=1, integer=True)
    Traceback (most recent call last):
    ...
    ValueError: counts repeat a value: [2, 2]
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    kind = "whole numbers" if integer else "numbers"
    bad = [
        v
        for v in values
        if not is_number(v) or not low <= v <= high or (integer and float(v) != int(v))
    ]
    if bad:
        where = f"≥ {low:g}" if high == float("inf") else f"in [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be {kind} {where}; these are not: {bad}")
    if len(set(values)) < len(values):
        raise ValueError(f"{name} repeat a value: {values}")
    return [int(v) for v in values] if integer else [float(v) for v in values]


def steps_bar(items: Iterable, *, description: str, progress: bool) -> Iterator:
    """``items`` with a progress bar on stderr (the outer loop of a study)."""
    from tqdm.auto import tqdm

    yield from tqdm(list(items), desc=description, disable=not progress, file=sys.stderr)


@dataclass
class StudyResult:
    """What a study returns: its numbers, its figures and a one-screen summary."""

    study: str
    numbers: dict[str, Any]
    summary: str
    figures: dict[str, Any] = field(default_factory=dict, repr=False)

    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``<study>.json``, ``<study>.txt`` and ``<study>-<figure>.png`` into
        the folder ``out``; an earlier result of the same study there is refused unless
        ``overwrite`` (other files in the folder are left alone).

        Examples
        --------
        >>> import tempfile
        >>> result = StudyResult("demo", {"miou": 0.5}, "mIoU 0.5")
        >>> folder = tempfile.mkdtemp()
        >>> result.save(folder).name
        'demo.json'
        >>> result.save(folder)
        Traceback (most recent call last):
        ...
        FileExistsError: ...demo.json exists (an earlier demo result); choose ...
        """
        import matplotlib.pyplot as plt

        check_result_free(out, self.study, overwrite=overwrite)
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, fig in self.figures.items():
            path = folder / f"{self.study}-{name}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            paths.append(path.name)
        body = {"study": self.study, **plain(self.numbers), "figures": paths}
        target = folder / f"{self.study}.json"
        target.write_text(dumps(body) + "\n")
        (folder / f"{self.study}.txt").write_text(self.summary + "\n")
        return target


def check_result_free(out: str | Path, study: str, *, overwrite: bool = False) -> None:
    """Refuse, before any work, a folder that already holds a result of ``study``
    (its ``<study>.json``), unless ``overwrite``; a file where the folder goes is
    refused too.

    Examples
    --------
    >>> import tempfile
    >>> check_result_free(tempfile.mkdtemp(), "report")  # nothing there yet
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; results go into a folder")
    target = folder / f"{study}.json"
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} exists (an earlier {study} result); choose another folder or overwrite it"
        )


def settings(run: RunSize, **extra: Any) -> dict[str, Any]:
    """The run's settings as plain data (for the JSON)."""
    return asdict(run) | extra


def run_size_of(size: str | RunSize) -> RunSize:
    """The :class:`RunSize` named ``size`` (a name of :data:`SIZES`, or a RunSize).

    Examples
    --------
    >>> run_size_of("tiny").steps
    3
    >>> run_size_of("huge")
    Traceback (most recent call last):
    ...
    ValueError: size must be one of tiny, small, medium (or a RunSize), got 'huge'
    """
    if isinstance(size, RunSize):
        return size
    if not isinstance(size, str) or size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)} (or a RunSize), got {size!r}")
    return SIZES[size]


def resolve_size(size: str | RunSize, data: StudyData) -> RunSize:
    """``size``'s networks and steps, at the data's own shape."""
    run = run_size_of(size)
    return replace(run, shape=tuple(int(s) for s in data.image.shape))


def pyplot():
    """matplotlib's pyplot on a file backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
