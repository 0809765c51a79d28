"""``self_correct``: stage 3, the Unbiased Teacher that cleans up pseudo labels.

Starting from the stage-2 network, a teacher (an exponential moving average of the
student, :class:`xctdask.teacher.EMATeacher`) labels weakly augmented patches; voxels
whose top-class probability is below ``threshold`` are masked; the student learns from
strongly augmented views of the same patches with label-smoothed cross entropy
normalised by the number of confident voxels; the teacher then follows the student.
The original pseudo labels are **not** used for training in this stage: the sampler
may have no target at all (its target, if any, only places the patches).

Validation mIoU is measured on a validation sampler's labels (ground truth when you
have it, else the pseudo labels), for the teacher, which is what is returned.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from xctdask import augment as aug
from xctdask import losses
from xctdask.sampling import PatchSampler
from xctdask.teacher import EMATeacher
from xctdask.train import History, _device, _logits, evaluate

__all__ = ["SelfCorrectionHistory", "self_correct"]


@dataclass
class SelfCorrectionHistory(History):
    """:class:`xctdask.train.History` plus, per step, the teacher's mean confidence and
    the fraction of voxels it masked."""

    mean_confidence: list[float] = field(default_factory=list)
    masked_fraction: list[float] = field(default_factory=list)


def self_correct(
    net: nn.Module,
    sampler: PatchSampler,
    *,
    steps: int,
    threshold: float = 0.9,
    ema: float = 0.999,
    lr: float = 1e-4,
    label_smoothing: float = 0.1,
    batch_size: int = 8,
    strong: aug.StrongAugment | None = None,
    validation: PatchSampler | None = None,
    val_every: int = 100,
    val_batches: int = 4,
    grad_clip: float | None = 1.0,
    amp: bool | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Unbiased-Teacher self-correction of a stage-2 network; returns the EMA teacher.

    Parameters
    ----------
    net : torch.nn.Module
        The stage-2 network (the student starts from it; it is trained in place).
    sampler : PatchSampler
        Where training patches come from; its target is not used for the loss.
    steps : int
    threshold : float
        Teacher confidence below which a voxel is masked.
    ema : float
        Teacher decay α (θ_t ← α θ_t + (1 − α) θ_s).
    lr, label_smoothing, batch_size, grad_clip, amp, device, seed, progress
        As in :func:`xctdask.train`.
    strong : StrongAugment, optional
        The student's augmentation (default settings otherwise).
    validation : PatchSampler, optional
        Labels to validate against (default: ``sampler`` if it has a target).

    Returns
    -------
    torch.nn.Module
        The teacher network, with ``history`` (:class:`SelfCorrectionHistory`).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    dev = _device(device)
    amp = dev.type == "cuda" if amp is None else amp
    net.to(dev).train()
    teacher = EMATeacher(net, decay=ema)
    criterion = losses.CrossEntropyLoss(label_smoothing=label_smoothing).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    strong = strong or aug.StrongAugment()
    checker = validation if validation is not None else sampler
    val = None
    if checker.target is not None and checker.has_labels("validation"):
        val = list(checker.batches("validation", batch_size, val_batches, seed=seed))
    history = SelfCorrectionHistory()
    torch.manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="self-correct", file=sys.stderr)
    clock = time.perf_counter()
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp)
    stream = sampler.batches("train", batch_size, steps, seed=seed)
    for step, batch in enumerate(stream):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        weak_view, _, _ = aug.weak(batch["image"], generator=g)
        strong_view = strong(weak_view, generator=g)
        weak_view, strong_view = weak_view.to(dev), strong_view.to(dev)
        with autocast:
            guess = teacher.label(weak_view, threshold)
            logits = _logits(net(strong_view))
            value = criterion(logits, guess.labels)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        teacher.update(net)
        history.step.append(step)
        history.loss.append(float(value.detach()))
        history.lr.append(lr)
        history.mean_confidence.append(guess.mean_confidence)
        history.masked_fraction.append(guess.masked_fraction)
        done = step + 1
        if val is not None and (done % val_every == 0 or done == steps):
            history.val_step.append(done)
            miou = evaluate(teacher.module, val, int(checker.n_classes), dev)["miou"]
            history.val_miou.append(miou)
            if miou > history.best_miou:
                history.best_miou, history.best_step = miou, done
        if bar is not None:
            bar.set_postfix(
                loss=f"{history.loss[-1]:.4f}",
                confidence=f"{guess.mean_confidence:.3f}",
                masked=f"{guess.masked_fraction:.2f}",
            )
            bar.update(1)
    if bar is not None:
        bar.close()
    history.seconds = time.perf_counter() - clock
    result = teacher.module
    result.history = history
    norm = sampler.normalize or getattr(net, "normalization", None)
    if norm is not None:
        result.normalization = tuple(float(v) for v in norm)
    return result
