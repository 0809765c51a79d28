"""The training engine behind :func:`xctdask.train` and :func:`xctdask.self_correct`.

One loop (:func:`fit_loop`) does what both stages share: optimisers and learning-rate
schedule, mixed precision, gradient clipping, validation through
:mod:`xctdask.metrics` on fixed validation patches, checkpoints with exact resume,
snapshots, a progress bar and the :class:`History`. What differs between the stages is
a :class:`Task`: supervised training runs the network's own
:meth:`~xctdask.models.Network.training_step`; self-correction runs the Unbiased
Teacher's step and validates the teacher. Options travel as one :class:`FitConfig`.

Exact resume: batch ``k`` depends only on the seed and ``k`` (the sampler's contract),
the augmentation of step ``k`` on ``(seed, k)``, and the PyTorch random state (dropout)
travels in the checkpoint with the weights, optimisers, teacher and history. A run
resumed from ``last.pt`` has the history an uninterrupted run has.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xctdask import augment as aug
from xctdask.backend import is_number

__all__ = [
    "FitConfig",
    "History",
    "SelfCorrectConfig",
    "SelfCorrectionTask",
    "SupervisedTask",
    "Task",
    "check_device",
    "evaluate",
    "fit_loop",
    "make_config",
    "resolve_device",
    "thread_budget",
]

OPTIMIZERS = ("adamw", "adam", "adabelief")
SCHEDULES = ("cosine", "constant", "linear")


@dataclass
class FitConfig:
    """Options of a training run (stage 2, or stage 3 with :class:`SelfCorrectConfig`).

    Attributes
    ----------
    steps : int
        Optimisation steps (batches).
    lr, lr_segment : float
        Learning rate; for a denoise+segment network ``lr`` is the denoiser's and
        ``lr_segment`` (default ``lr / 10``) the segmenter's.
    optimizer : {"adamw", "adam", "adabelief"}
    betas : (float, float)
    weight_decay : float
    schedule : {"cosine", "constant", "linear"}
        After ``warmup`` linear warm-up steps: cosine to 0, constant, or ``"linear"``:
        constant until ``decay_start`` (a fraction of the steps), then linearly down to
        ``final_lr`` × ``lr`` (the Modular U-Net paper's 10⁻³ then down to 10⁻⁴).
    warmup : int
    decay_start, final_lr : float
    batch_size : int
    val_every, val_batches : int
        Validate every ``val_every`` steps on ``val_batches`` fixed validation batches.
    grad_clip : float or None
        Maximum gradient norm (None or 0: no clipping).
    augment : bool
        Weak (geometric) augmentation of every training batch.
    strong : StrongAugment, optional
        Intensity augmentation (:func:`xctdask.augment.strong`: contrast, blur, noise,
        cut-out) of every training image after the weak one; the targets are unchanged.
        Off (None) by default in stage 2; in stage 3 it is the student's augmentation.
    noise_fraction, noise_sigma : float
        Gaussian noise on a fraction of the training samples, each with a sigma drawn
        in ``[0, noise_sigma]`` (in units of the sample's std), as the noise-robustness
        study trains (0 = off).
    degrade_sigma, degrade_fraction : float
        Noise of about ``degrade_sigma`` (normalised grey values) on a
        ``degrade_fraction`` of the training samples (:func:`xctdask.augment.degrade`):
        an HQ scan's patches made as noisy as the LQ scans the network will see (0 = off).
    degrade_spectrum : numpy.ndarray, optional
        That noise's 2-D power spectrum (:func:`xctdask.metrics.noise_spectrum`); white
        noise without one.
    loss : torch.nn.Module, optional
        Default: the network's :meth:`~xctdask.models.Network.default_loss`.
    class_weights : "auto", bool or array of shape (n_classes,)
        Weights of the default loss's cross entropy. ``True``: the Stacked-DenseUSeg
        paper's ``median(P/S)/(P/S)``, P and S counted by
        :meth:`~xctdask.PatchSampler.class_statistics` on training patches (this
        **reads** ``class_patches`` patches first); ``"auto"``: ``True`` for networks
        that declare ``class_weighted`` (Stacked-DenseUSeg), else none.
    class_patches : int
        Training patches counted for the class weights.
    label_smoothing : float
        Label smoothing of the default cross-entropy losses.
    amp : bool, optional
        bf16 autocast; default on for CUDA, off on CPU.
    device : str
        ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda:1"``, ...
    threads : int, optional
        PyTorch intra-op threads of this process; default :func:`thread_budget`.
    checkpoint : path, optional
        Folder for ``last.pt`` (at every validation) and ``best.pt``.
    resume : bool
        Continue from ``checkpoint/last.pt`` if it exists.
    keep_best : bool
        Load the best validation weights before returning.
    snapshot_every : int, optional
        Keep the weights every this many steps in ``history.snapshots`` (CPU tensors).
    seed : int
    progress : bool
    """

    steps: int = 100
    lr: float = 1e-3
    lr_segment: float | None = None
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup: int = 0
    decay_start: float = 0.5
    final_lr: float = 0.1
    batch_size: int = 8
    val_every: int = 100
    val_batches: int = 4
    grad_clip: float | None = 1.0
    augment: bool = True
    strong: aug.StrongAugment | None = None
    noise_fraction: float = 0.0
    noise_sigma: float = 0.5
    degrade_sigma: float = 0.0
    degrade_fraction: float = 0.5
    degrade_spectrum: Any = None
    loss: nn.Module | None = None
    class_weights: Any = "auto"
    class_patches: int = 64
    label_smoothing: float = 0.0
    amp: bool | None = None
    device: str = "auto"
    threads: int | None = None
    checkpoint: str | Path | None = None
    resume: bool = False
    keep_best: bool = True
    snapshot_every: int | None = None
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("lr", "lr_segment"):
            value = getattr(self, name)
            if (value is not None or name == "lr") and not _positive_finite(value):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.grad_clip is not None and not (
            self.grad_clip == 0 or _positive_finite(self.grad_clip)
        ):  # a negative norm flips every gradient: training would climb the loss
            raise ValueError(
                f"grad_clip must be a positive number (None or 0: no clipping), "
                f"got {self.grad_clip!r}"
            )
        if not (isinstance(self.warmup, int) and not isinstance(self.warmup, bool)) or (
            self.warmup < 0
        ):
            raise ValueError(f"warmup must be an integer ≥ 0 (steps), got {self.warmup!r}")
        if not 0 <= self.decay_start <= 1:
            raise ValueError(
                f"decay_start is a fraction of the steps, in [0, 1]; got {self.decay_start!r}"
            )
        if not 0 <= self.final_lr <= 1:
            raise ValueError(f"final_lr is a fraction of lr, in [0, 1]; got {self.final_lr!r}")
        if not (0 <= self.weight_decay < math.inf):
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay!r}")
        betas = tuple(self.betas) if isinstance(self.betas, tuple | list) else ()
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0 <= self.noise_sigma < math.inf:
            raise ValueError(f"noise_sigma must be ≥ 0, got {self.noise_sigma!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 0):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ValueError(f"amp must be True, False or None (automatic), got {self.amp!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("batch_size", "val_every", "val_batches", "class_patches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.noise_fraction <= 1:
            raise ValueError(f"noise_fraction must be in [0, 1], got {self.noise_fraction!r}")
        if not 0 <= self.degrade_fraction <= 1:
            raise ValueError(f"degrade_fraction must be in [0, 1], got {self.degrade_fraction!r}")
        if not self.degrade_sigma >= 0:
            raise ValueError(f"degrade_sigma must be ≥ 0, got {self.degrade_sigma!r}")
        if isinstance(self.class_weights, str) and self.class_weights != "auto":
            raise ValueError(
                f"class_weights must be 'auto', True, False or one weight per class, "
                f"got {self.class_weights!r}"
            )
        if not isinstance(self.class_weights, str | bool | type(None)):
            weights = np.asarray(
                self.class_weights.detach().cpu()
                if isinstance(self.class_weights, torch.Tensor)
                else self.class_weights,
                dtype=float,
            )
            if weights.ndim != 1 or not np.isfinite(weights).all() or (weights < 0).any():
                raise ValueError(
                    "class_weights given as values must be one finite weight ≥ 0 per class, "
                    f"got {self.class_weights!r}"
                )
            if not (weights > 0).any():
                raise ValueError("class_weights are all 0: no class would be learnt")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be ≥ 1, got {self.snapshot_every!r}")
        check_device(self.device)  # training runs in this process


@dataclass
class SelfCorrectConfig(FitConfig):
    """:class:`FitConfig` plus the Unbiased Teacher's settings (stage 3).

    Attributes
    ----------
    threshold : float
        Teacher confidence below which a voxel is masked.
    class_keep : float
        Every class the teacher predicts in a batch keeps at least this share of its
        voxels (its most confident) even below ``threshold``, so a small, less
        certain class is still taught (see :func:`xctdask.teacher.class_thresholds`).
        The default 0 masks by ``threshold`` alone, as the Unbiased Teacher does;
        :class:`xctdask.Segmenter` uses 0.1 (measured there).
    ema : float
        Teacher decay α (θ_t ← α θ_t + (1 − α) θ_s).
    strong : StrongAugment, optional
        The student's augmentation.
    validation : PatchSampler, optional
        Labels to validate the teacher against (default: the training sampler's).
    labelled : PatchSampler, optional
        Annotations for the labelled + unlabelled form of the Unbiased Teacher: "In the
        semi-supervised setting, the student receives supervision from the teacher's
        pseudo labels and the images with ground-truth labels" (the SR-CT
        self-correction paper, Sec. III-D, on Liu et al. 2021). Each step the student
        also learns from a batch of these annotated patches (weakly augmented, cross
        entropy weighted by ``class_weights`` when they are given as values), and the
        teacher's term is multiplied by ``unsupervised_weight``. None (default): the
        unsupervised form, as the SR-CT paper uses it.
    unsupervised_weight : float
        λ_u, the weight of the teacher's term next to the annotations' (with
        ``labelled`` only).
    """

    lr: float = 1e-4
    label_smoothing: float = 0.1
    threshold: float = 0.9
    class_keep: float = 0.0
    ema: float = 0.999
    strong: aug.StrongAugment | None = None
    validation: Any = None
    labelled: Any = None
    unsupervised_weight: float = 1.0
    keep_best: bool = False

    def check(self) -> None:
        super().check()
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        if not 0 <= self.ema <= 1:
            raise ValueError(f"ema must be in [0, 1], got {self.ema!r}")
        if not 0 <= self.class_keep <= 1:
            raise ValueError(f"class_keep must be in [0, 1], got {self.class_keep!r}")
        if not self.unsupervised_weight >= 0:
            raise ValueError(f"unsupervised_weight must be ≥ 0, got {self.unsupervised_weight!r}")
        if self.labelled is not None and getattr(self.labelled, "target", None) is None:
            raise ValueError("labelled must be a PatchSampler with annotations (a target)")


def make_config(kind: type[FitConfig], config: FitConfig | None, options: dict) -> FitConfig:
    """``config`` (or the defaults of ``kind``) with ``options`` replacing its fields."""
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown training options {unknown}; {kind.__name__} has {sorted(names)}")
    base = config if config is not None else kind()
    if not isinstance(base, kind):
        base = kind(**{f.name: getattr(base, f.name) for f in fields(base) if f.name in names})
    result = replace(base, **options)
    result.check()
    return result


@dataclass
class History:
    """What happened during training, step by step (both stages).

    ``val_iou`` holds the per-class IoU of every validation next to its mean
    ``val_miou``; ``validated_against`` says which labels (annotations, pseudo labels,
    ground truth); ``best_score`` is the best mean IoU (PSNR for a denoiser) and
    ``best_step`` where it was; ``mean_confidence`` and ``masked_fraction`` are logged by
    stage 3; ``class_weights`` are the cross entropy's class weights (empty: none);
    ``snapshots`` holds ``(step, state_dict)`` pairs when ``snapshot_every`` is set.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_miou: list[float] = field(default_factory=list)
    val_iou: list[list[float]] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)
    mean_confidence: list[float] = field(default_factory=list)
    masked_fraction: list[float] = field(default_factory=list)
    best_step: int = -1
    best_miou: float = -math.inf
    best_score: float = -math.inf
    seconds: float = 0.0
    threads: int = 0
    validated_against: str = ""
    class_weights: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, dict]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready; snapshots left out)."""
        out = asdict(replace(self, snapshots=[]))
        out.pop("snapshots")
        return out


def _positive_finite(value: Any) -> bool:
    return is_number(value) and value > 0


def check_device(device: Any, *, here: bool = True) -> None:
    """Refuse, before any work, a device PyTorch cannot name, or (``here``) one that
    this process cannot use: ``"cuda"`` without a GPU, ``"cuda:3"`` with two.

    ``here=False`` checks the name only, for work that runs on a cluster's workers,
    whose devices this process cannot see.

    Examples
    --------
    >>> check_device("cpu"); check_device("auto"); check_device("cuda:1", here=False)
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (or another ...), got 'gpu'
    """
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            "device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (or another PyTorch device), "
            f"got {device!r}"
        ) from None
    if not here or parsed.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"device must be one this process has: PyTorch sees no CUDA GPU here (torch "
            f"{torch.__version__}), so {device!r} cannot run; use 'auto' or 'cpu', or "
            "install a CUDA build of PyTorch"
        )
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(
            f"device must be one this process has: {device!r} was asked for, but it has "
            f"{count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        )


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; a device this process cannot use
    is refused in words (see :func:`check_device`)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    return torch.device(device)


def thread_budget() -> int:
    """PyTorch threads for this process: the cores the local Dask workers leave free.

    With a ``LocalCluster`` on the same machine, PyTorch's default (one thread per
    core) fights the workers' threads; with other work on a 2-core machine training
    ran 8× slower than with one thread. The budget is the machine's cores minus the
    threads of the workers running on this host (at least 1). Without a client, or with
    remote workers only, every core is used. ``XCTDASK_TRAIN_THREADS`` overrides it.
    """
    forced = os.environ.get("XCTDASK_TRAIN_THREADS")
    if forced:
        return max(1, int(forced))
    from xctdask.cluster import active_client

    cores = os.cpu_count() or 1
    client = active_client()
    if client is None:
        return cores
    import socket

    local_names = {"127.0.0.1", "localhost", socket.gethostname()}
    with contextlib.suppress(OSError):
        local_names.add(socket.gethostbyname(socket.gethostname()))
    busy = 0
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except (TypeError, KeyError):
        workers = client.scheduler_info().get("workers", {})
    for address, info in workers.items():
        host = address.split("://")[-1].rsplit(":", 1)[0]
        if host in local_names:
            busy += int(info.get("nthreads", 1))
    return max(1, cores - busy)


class Task:
    """What a stage does per step; :func:`fit_loop` does the rest."""

    name = "train"

    def setup(self, net: nn.Module, config: FitConfig, device: torch.device, n_classes: int):
        raise NotImplementedError

    def step(self, batch: dict, step: int) -> tuple[float, dict[str, float]]:
        raise NotImplementedError

    def evaluated(self) -> nn.Module:
        """The module validated, checkpointed as best and returned."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def optimizers(self) -> list[torch.optim.Optimizer]:
        raise NotImplementedError


def _make_optimizer(config: FitConfig):
    def make(params, **kwargs):
        options = {"weight_decay": config.weight_decay, "betas": config.betas, **kwargs}
        if config.optimizer == "adabelief":
            try:
                from adabelief_pytorch import AdaBelief
            except ImportError as err:
                raise ImportError(
                    "optimizer='adabelief' needs the adabelief-pytorch package: "
                    "pip install 'xctdask[papers]'"
                ) from err
            return AdaBelief(params, eps=1e-16, rectify=False, print_change_log=False, **options)
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return cls(params, **options)

    return make


class SupervisedTask(Task):
    """Stage 2: the network's own training step on labelled (or clean) patches."""

    name = "train"

    def setup(self, net, config, device, n_classes):
        from xctdask.losses import CrossEntropyLoss

        self.net, self.config, self.device = net, config, device
        weights = config.class_weights if isinstance(config.class_weights, torch.Tensor) else None
        loss = config.loss if config.loss is not None else net.default_loss(weights)
        if config.label_smoothing and config.loss is None:
            if isinstance(loss, CrossEntropyLoss):
                loss = CrossEntropyLoss(loss.weight, label_smoothing=config.label_smoothing)
            elif hasattr(loss, "segmentation"):
                loss.segmentation = CrossEntropyLoss(
                    weights, label_smoothing=config.label_smoothing
                )
        self.loss = loss.to(device)
        make = _make_optimizer(config)
        self._optimizers = {"main": make(net.optimizer_groups(config))}
        self._optimizers.update(net.extra_optimizers(config, make))
        amp = device.type == "cuda" if config.amp is None else config.amp

        def autocast():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)

        from xctdask.models.base import StepContext

        self.ctx = StepContext(
            loss=self.loss,
            optimizers=self._optimizers,
            autocast=autocast,
            grad_clip=config.grad_clip,
            n_classes=n_classes,
        )

    def step(self, batch, step):
        batch = _augmented(batch, self.config, step)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        self.ctx.logs = {}
        value = self.net.training_step(batch, self.ctx)
        return float(value), dict(self.ctx.logs)

    def evaluated(self):
        return self.net

    def optimizers(self):
        return list(self._optimizers.values())

    def state_dict(self):
        return {
            "model": self.net.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self._optimizers.items()},
        }

    def load_state_dict(self, state):
        self.net.load_state_dict(state["model"])
        for name, opt_state in state["optimizers"].items():
            self._optimizers[name].load_state_dict(opt_state)


class SelfCorrectionTask(Task):
    """Stage 3: the Unbiased Teacher (see :mod:`xctdask.teacher`)."""

    name = "self-correct"

    def setup(self, net, config, device, n_classes):
        from xctdask.losses import CrossEntropyLoss
        from xctdask.teacher import EMATeacher

        if not net.segments:
            raise ValueError("self-correction needs a network that produces class scores")
        self.net, self.config, self.device = net, config, device
        self.teacher = EMATeacher(net, decay=config.ema)
        self.criterion = CrossEntropyLoss(label_smoothing=config.label_smoothing).to(device)
        self.optimizer = _make_optimizer(config)(net.optimizer_groups(config))
        self.strong = config.strong or aug.StrongAugment()
        weights = config.class_weights if isinstance(config.class_weights, torch.Tensor) else None
        self.supervised = CrossEntropyLoss(weight=weights).to(device)
        self._labelled_stream = None
        amp = device.type == "cuda" if config.amp is None else config.amp
        self.autocast = lambda: torch.autocast(
            device_type=device.type, dtype=torch.bfloat16, enabled=amp
        )

    def step(self, batch, step):
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        weak_view, _, _ = aug.weak(batch["image"], generator=g)
        strong_view = self.strong(weak_view, generator=g)
        if self.config.degrade_sigma > 0:  # the student sees LQ-like noise, the teacher not
            strong_view = aug.degrade(
                strong_view,
                self.config.degrade_sigma,
                self.config.degrade_fraction,
                spectrum=self.config.degrade_spectrum,
                generator=g,
            )
        weak_view, strong_view = weak_view.to(self.device), strong_view.to(self.device)
        with self.autocast():
            guess = self.teacher.label(
                weak_view, self.config.threshold, class_keep=self.config.class_keep
            )
            logits = self.net.split(self.net(strong_view))["logits"]
            value = self.criterion(logits, guess.labels)
            if self.config.labelled is not None:
                image, target = self._labelled_batch(step, g)
                with_labels = self.net.split(self.net(image))["logits"]
                value = self.supervised(with_labels, target) + (
                    self.config.unsupervised_weight * value
                )
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.teacher.update(self.net)
        return float(value.detach()), {
            "mean_confidence": guess.mean_confidence,
            "masked_fraction": guess.masked_fraction,
        }

    def _labelled_batch(self, step: int, g: torch.Generator):
        """The annotated batch of ``step`` (its own stream, resumable), weakly augmented."""
        if self._labelled_stream is None:
            self._labelled_stream = self.config.labelled.batches(
                "train", self.config.batch_size, seed=self.config.seed + 1, start=step
            )
        batch = next(self._labelled_stream)
        image, target, _ = aug.weak(batch["image"], batch["target"], generator=g)
        return image.to(self.device), target.to(self.device)

    def evaluated(self):
        return self.teacher.module

    def optimizers(self):
        return [self.optimizer]

    def state_dict(self):
        return {
            "model": self.net.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizers": {"main": self.optimizer.state_dict()},
        }

    def load_state_dict(self, state):
        self.net.load_state_dict(state["model"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizers"]["main"])


def _augmented(batch: dict, config: FitConfig, step: int) -> dict:
    """Weak augmentation and optional noise on a fraction of the samples."""
    image, target, clean = batch["image"], batch.get("target"), batch.get("clean")
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    if config.augment:
        image, target, clean = aug.weak(image, target, clean, generator=g)
    if config.strong is not None:
        image = config.strong(image, generator=g)
    if config.noise_fraction > 0:
        image = aug.noise_fraction(image, config.noise_fraction, config.noise_sigma, generator=g)
    if config.degrade_sigma > 0:
        image = aug.degrade(
            image,
            config.degrade_sigma,
            config.degrade_fraction,
            spectrum=config.degrade_spectrum,
            generator=g,
        )
    out = {"image": image}
    if target is not None:
        out["target"] = target
    if clean is not None:
        out["clean"] = clean
    return out


@torch.no_grad()
def evaluate(
    net: nn.Module, batches: list[dict], n_classes: int, device: torch.device
) -> dict[str, Any]:
    """Scores of ``net`` on validation ``batches``: IoU per class and its mean over
    labelled voxels (:func:`xctdask.metrics.confusion_matrix`), and the PSNR of the
    denoised output against the clean patches (:func:`xctdask.metrics.psnr`)."""
    from xctdask import metrics

    was_training = net.training
    net.eval()
    confusion = np.zeros((n_classes, n_classes), np.int64) if n_classes else None
    denoised, clean = [], []
    for batch in batches:
        outputs = net.split(net(batch["image"].to(device)))
        if confusion is not None and "logits" in outputs and "target" in batch:
            pred = outputs["logits"].argmax(1).cpu().numpy()
            confusion += metrics.confusion_matrix(pred, batch["target"].numpy(), n_classes)
        if "denoised" in outputs and "clean" in batch:
            denoised.append(outputs["denoised"].float().cpu().numpy())
            clean.append(batch["clean"].numpy())
    net.train(was_training)
    result: dict[str, Any] = {}
    if confusion is not None:
        tp = np.diag(confusion).astype(float)
        union = confusion.sum(0) + confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        result["iou"] = [float(v) for v in iou]
        result["miou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
    if denoised:
        # psnr scores where the clean scan is finite: its NaN voxels are not scored
        result["psnr"] = float(metrics.psnr(np.concatenate(denoised), np.concatenate(clean)))
    return result


def _lr_factor(step: int, config: FitConfig) -> float:
    if config.warmup and step < config.warmup:
        return (step + 1) / config.warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if progress <= config.decay_start:  # "linear": flat, then down to final_lr
        return 1.0
    frac = (progress - config.decay_start) / max(1e-12, 1 - config.decay_start)
    return 1.0 - frac * (1.0 - config.final_lr)


def _save(path: Path, state: dict) -> None:
    from xctdask.models.store import atomic_save

    atomic_save(state, path)


def _resolve_class_weights(config: FitConfig, net: nn.Module, sampler: Any, n_classes: int):
    """``config`` with ``class_weights`` a tensor (or None): counted on the sampler's
    training patches when asked for (or when the network declares it wants them)."""
    import dataclasses

    from xctdask.losses import class_weights

    wanted = config.class_weights
    if isinstance(wanted, str):
        wanted = bool(getattr(net, "class_weighted", False))
    if wanted is True and n_classes and config.loss is None:
        labelled = getattr(config, "labelled", None)  # annotations, when given
        counted = labelled if labelled is not None else sampler
        pixels, samples = counted.class_statistics("train", n_patches=config.class_patches)
        weights = class_weights(pixels, samples)
    elif wanted is not False and wanted is not True and wanted is not None:
        weights = torch.as_tensor(np.asarray(wanted, np.float32))
        if n_classes and weights.shape != (n_classes,):
            raise ValueError(f"class_weights must have {n_classes} values, got {weights.shape}")
    else:
        weights = None
    return dataclasses.replace(config, class_weights=weights)


def fit_loop(
    net: nn.Module, sampler: Any, config: FitConfig, task: Task, *, n_classes: int
) -> tuple[nn.Module, History]:
    """Run ``task`` for ``config.steps`` steps on ``sampler``'s training patches.

    Returns the evaluated module (the network, or stage 3's teacher) with the best
    validation weights loaded when ``config.keep_best``, and the history.
    """
    from xctdask.models.store import read_file

    device = resolve_device(config.device)
    threads = config.threads or thread_budget()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net.to(device).train()
        config = _resolve_class_weights(config, net, sampler, n_classes)
        task.setup(net, config, device, n_classes)
        history = History(threads=threads)
        best_state = None
        start = 0
        folder = Path(config.checkpoint) if config.checkpoint is not None else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            last = folder / "last.pt"
            if config.resume and last.exists():
                state = read_file(last, map_location=str(device))
                task.load_state_dict(state["task"])
                history = History(**{**state["history"], "threads": threads})
                start = int(state["step"])
                torch.set_rng_state(state["torch_rng"])
                if (folder / "best.pt").exists():
                    best_state = read_file(folder / "best.pt")["model"]
        checker = getattr(config, "validation", None) or sampler
        validation = None
        if n_classes or sampler.clean is not None:
            if getattr(checker, "has_labels", lambda part: True)("validation"):
                validation = checker.validation_batches(config.batch_size, config.val_batches)
        history.validated_against = getattr(checker, "describe", lambda: "")() if validation else ""
        if isinstance(config.class_weights, torch.Tensor):
            history.class_weights = [round(float(w), 6) for w in config.class_weights]
        if start == 0:
            torch.manual_seed(config.seed)
        stream = sampler.batches(
            "train", config.batch_size, config.steps - start, seed=config.seed, start=start
        )
        bar = None
        if config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=config.steps,
                initial=start,
                desc=f"{task.name} ({threads} thread{'s' if threads > 1 else ''})",
                file=sys.stderr,
                leave=True,
            )
        base_lrs = [[g["lr"] for g in opt.param_groups] for opt in task.optimizers()]
        clock = time.perf_counter()
        scores: dict[str, Any] = {}
        try:
            for step, batch in zip(range(start, config.steps), stream, strict=False):
                factor = _lr_factor(step, config)
                for opt, bases in zip(task.optimizers(), base_lrs, strict=True):
                    for group, base in zip(opt.param_groups, bases, strict=True):
                        group["lr"] = base * factor
                value, logs = task.step(batch, step)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"{task.name}: the training loss is {value} at step {step}; the "
                        "network's weights are no longer usable. Check the scan and its "
                        "labels, or lower the learning rate"
                    )
                history.step.append(step)
                history.loss.append(value)
                history.lr.append(task.optimizers()[0].param_groups[0]["lr"])
                if "mean_confidence" in logs:
                    history.mean_confidence.append(logs["mean_confidence"])
                    history.masked_fraction.append(logs["masked_fraction"])
                done = step + 1
                if config.snapshot_every and done % config.snapshot_every == 0:
                    module = task.evaluated()
                    history.snapshots.append(
                        (
                            done,
                            {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
                        )
                    )
                if done % config.val_every == 0 or done == config.steps:
                    if validation is not None:
                        scores = evaluate(task.evaluated(), validation, n_classes, device)
                        history.val_step.append(done)
                        history.val_miou.append(scores.get("miou", math.nan))
                        history.val_iou.append(scores.get("iou", []))
                        if "psnr" in scores:
                            history.val_psnr.append(scores["psnr"])
                        # segmenters are kept by mean IoU, denoisers by PSNR
                        score = scores.get("miou", scores.get("psnr", -math.inf))
                        if score > history.best_score:
                            history.best_score, history.best_step = score, done
                            history.best_miou = scores.get("miou", history.best_miou)
                            best_state = copy.deepcopy(task.evaluated().state_dict())
                            if folder is not None:
                                _save(folder / "best.pt", {"model": best_state, "step": done})
                    if folder is not None:
                        history.seconds += time.perf_counter() - clock
                        clock = time.perf_counter()
                        _save(
                            folder / "last.pt",
                            {
                                "task": task.state_dict(),
                                "history": history.to_dict(),
                                "step": done,
                                "torch_rng": torch.get_rng_state(),
                                "config": getattr(net, "config", None),
                            },
                        )
                if bar is not None:
                    shown = {"loss": f"{value:.4f}"}
                    if "miou" in scores:
                        shown["val_miou"] = f"{scores['miou']:.3f}"
                    if "mean_confidence" in logs:
                        shown["confidence"] = f"{logs['mean_confidence']:.3f}"
                    bar.set_postfix(shown, refresh=False)
                    bar.update(1)
        finally:
            stream.close()  # nothing left reading patches in the background
        if bar is not None:
            bar.close()
        history.seconds += time.perf_counter() - clock
        result = task.evaluated()
        if config.keep_best and best_state is not None:
            result.load_state_dict(best_state)
        return result, history
    finally:
        torch.set_num_threads(previous_threads)
