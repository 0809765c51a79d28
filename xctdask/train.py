"""``train``: stage 2, a network trained on patches from a :class:`PatchSampler`.

Single-process training fed by distributed sampling: the patches are cut on the Dask
workers and prefetched (see :mod:`xctdask.sampling`), the network trains where this
process runs (its GPU when there is one).

* AdamW (or Adam), cosine or constant learning rate after an optional linear warm-up,
  gradient clipping, bf16 autocast on CUDA.
* Weak augmentation (:func:`xctdask.augment.weak`) of every training batch.
* Validation every ``val_every`` steps on a fixed set of validation patches: mean IoU
  over labelled voxels, and PSNR of the denoised output for a denoise+segment network.
* The best validation weights are kept (and loaded at the end), checkpoints written to
  a folder, and a run resumes from its last checkpoint with the same history it would
  have had uninterrupted: batch ``k`` depends only on the seed and ``k``, and the
  PyTorch random state travels in the checkpoint.
* Handles plain segmentation networks, ``stacked-denseuseg`` (CE + λ·MSE, a learning
  rate per part) and ``pix2pix`` (adversarial + L1, a discriminator step per step).

The history is returned on the network as ``net.history`` (a :class:`History`).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xctdask import augment as aug
from xctdask import losses
from xctdask.sampling import PatchSampler

__all__ = ["History", "evaluate", "train"]


@dataclass
class History:
    """What happened during training, step by step."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_miou: list[float] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)
    best_step: int = -1
    best_miou: float = -math.inf
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _kind(net: nn.Module) -> str:
    name = getattr(net, "config", {}).get("name", "")
    if name == "stacked-denseuseg":
        return "stacked"
    if name == "pix2pix":
        return "pix2pix"
    return "segment"


def _logits(out: Any) -> torch.Tensor:
    return out[1] if isinstance(out, tuple) else out


@torch.no_grad()
def evaluate(net: nn.Module, batches: list[dict], n_classes: int, device: torch.device) -> dict:
    """Mean IoU (labelled voxels) and, for a denoising output, PSNR on ``batches``."""
    was_training = net.training
    net.eval()
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.int64)
    squared, count, lo, hi = 0.0, 0, math.inf, -math.inf
    for batch in batches:
        out = net(batch["image"].to(device))
        pred = _logits(out).argmax(1).cpu()
        target = batch["target"]
        keep = target != 255
        flat = target[keep] * n_classes + pred[keep]
        confusion += torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, -1)
        if isinstance(out, tuple) and "clean" in batch:
            clean = batch["clean"]
            squared += float(((out[0].cpu() - clean) ** 2).sum())
            count += clean.numel()
            lo, hi = min(lo, float(clean.min())), max(hi, float(clean.max()))
    net.train(was_training)
    inter = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - inter
    present = union > 0
    result = {"miou": float((inter[present] / union[present]).mean()) if present.any() else 0.0}
    if count:
        mse = squared / count
        result["psnr"] = 10 * math.log10((hi - lo) ** 2 / mse) if mse > 0 else math.inf
    return result


def _lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint


def train(
    net: nn.Module,
    sampler: PatchSampler,
    *,
    steps: int,
    loss: nn.Module | None = None,
    lr: float = 1e-3,
    lr_segment: float | None = None,
    optimizer: str = "adamw",
    weight_decay: float = 1e-4,
    schedule: str = "cosine",
    warmup: int = 0,
    batch_size: int = 8,
    val_every: int = 100,
    val_batches: int = 4,
    grad_clip: float | None = 1.0,
    augment: bool = True,
    amp: bool | None = None,
    device: str = "auto",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    keep_best: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Train ``net`` on ``sampler``'s training patches; returns it (best weights loaded).

    Parameters
    ----------
    net : torch.nn.Module
        A network of :mod:`xctdask.models` (or any module mapping patches to logits).
    sampler : PatchSampler
        With a ``target``; with ``clean`` too for ``stacked-denseuseg``.
    steps : int
        Optimisation steps (batches).
    loss : torch.nn.Module, optional
        Default: cross entropy with ``ignore_index=255``; ``DenoiseSegmentLoss`` for the
        stacked network; ``Pix2PixLoss`` for Pix2Pix.
    lr, lr_segment : float
        Learning rate; for the stacked network ``lr`` is the denoiser's and
        ``lr_segment`` (default ``lr / 10``, the paper's 1e-4 / 1e-5) the segmenter's.
    optimizer : {"adamw", "adam"}
    schedule : {"cosine", "constant"}, warmup : int
    val_every, val_batches : int
        Validate every ``val_every`` steps on ``val_batches`` fixed validation batches.
    grad_clip : float or None
        Maximum gradient norm.
    augment : bool
        Weak augmentation of training batches.
    amp : bool, optional
        bf16 autocast; default on for CUDA, off on CPU.
    checkpoint : path, optional
        Folder for ``last.pt`` (at every validation) and ``best.pt``.
    resume : bool
        Continue from ``checkpoint/last.pt`` if it exists.
    keep_best : bool
        Load the best validation weights before returning.

    Returns
    -------
    torch.nn.Module
        The trained network, with ``net.history`` (:class:`History`).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if sampler.target is None:
        raise ValueError("training needs a sampler with a target (labels)")
    kind = _kind(net)
    if kind == "stacked" and sampler.clean is None:
        raise ValueError("the stacked denoise+segment network needs a sampler with `clean`")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    n_classes = int(sampler.n_classes)
    predicted = getattr(net, "n_classes", None)
    if predicted is not None and n_classes > int(predicted):
        raise ValueError(
            f"the labels hold classes 0..{n_classes - 1}, but the network predicts "
            f"{predicted} classes; build it with n_classes={n_classes}"
        )
    dev = _device(device)
    amp = dev.type == "cuda" if amp is None else amp
    net.to(dev).train()

    if loss is None:
        loss = {
            "stacked": losses.DenoiseSegmentLoss,
            "pix2pix": losses.Pix2PixLoss,
            "segment": losses.CrossEntropyLoss,
        }[kind]()
    loss = loss.to(dev)
    make = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}.get(optimizer)
    if make is None:
        raise ValueError(f"optimizer must be 'adamw' or 'adam', got {optimizer!r}")
    if kind == "stacked":
        groups = net.param_groups(lr, lr / 10 if lr_segment is None else lr_segment)
    elif kind == "pix2pix":
        groups = [{"params": list(net.generator.parameters()), "lr": lr}]
    else:
        groups = [{"params": list(net.parameters()), "lr": lr}]
    opt = make(groups, weight_decay=weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    disc_opt = None
    if kind == "pix2pix":
        disc_opt = make(net.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    history = History()
    best_state = None
    start = 0
    folder = Path(checkpoint) if checkpoint is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        last = folder / "last.pt"
        if resume and last.exists():
            state = torch.load(last, map_location=dev, weights_only=False)
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if disc_opt is not None:
                disc_opt.load_state_dict(state["disc_optimizer"])
            history = History(**state["history"])
            start = state["step"]
            torch.set_rng_state(state["torch_rng"])
            best_path = folder / "best.pt"
            if best_path.exists():
                best_state = torch.load(best_path, map_location="cpu", weights_only=False)["model"]

    has_validation = sampler.slabs["validation"][1] > sampler.slabs["validation"][0]
    validation = (
        list(sampler.batches("validation", batch_size, val_batches, seed=seed))
        if has_validation
        else None  # split with no validation slab: train, keep the last weights
    )
    if start == 0:
        torch.manual_seed(seed)
    stream = sampler.batches("train", batch_size, steps - start, seed=seed, start=start)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="train", file=sys.stderr, leave=True)
    clock = time.perf_counter()
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp)
    for step, batch in zip(range(start, steps), stream, strict=False):
        image = batch["image"]
        target = batch["target"]
        clean = batch.get("clean")
        if augment:
            image, target, clean = aug.weak(
                image,
                target,
                clean,
                generator=torch.Generator().manual_seed(seed * 1_000_003 + step),
            )
        image, target = image.to(dev), target.to(dev)
        clean = clean.to(dev) if clean is not None else None
        factor = _lr_factor(step, steps, warmup, schedule)
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        with autocast:
            if kind == "pix2pix":
                value = _pix2pix_step(net, loss, opt, disc_opt, image, target, n_classes)
            else:
                out = net(image)
                value = loss(out, (clean, target)) if kind == "stacked" else loss(out, target)
        if kind != "pix2pix":
            opt.zero_grad(set_to_none=True)
            value.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            opt.step()
        history.step.append(step)
        history.loss.append(float(value.detach()))
        history.lr.append(opt.param_groups[0]["lr"])
        done = step + 1
        if done % val_every == 0 or done == steps:
            scores = {"miou": math.nan}
            if validation is not None:
                scores = evaluate(net, validation, n_classes, dev)
                history.val_step.append(done)
                history.val_miou.append(scores["miou"])
                if "psnr" in scores:
                    history.val_psnr.append(scores["psnr"])
                if scores["miou"] > history.best_miou:
                    history.best_miou, history.best_step = scores["miou"], done
                    best_state = copy.deepcopy(net.state_dict())
                    if folder is not None:
                        _save(folder / "best.pt", {"model": best_state, "step": done})
            if folder is not None:
                history.seconds += time.perf_counter() - clock
                clock = time.perf_counter()
                state = {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "history": history.to_dict(),
                    "step": done,
                    "torch_rng": torch.get_rng_state(),
                    "config": getattr(net, "config", None),
                }
                if disc_opt is not None:
                    state["disc_optimizer"] = disc_opt.state_dict()
                _save(folder / "last.pt", state)
            if bar is not None:
                bar.set_postfix(
                    loss=f"{float(value.detach()):.4f}", val_miou=f"{scores['miou']:.3f}"
                )
        elif bar is not None and done % 10 == 0:
            bar.set_postfix(loss=f"{float(value.detach()):.4f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    history.seconds += time.perf_counter() - clock
    if keep_best and best_state is not None:
        net.load_state_dict(best_state)
    net.history = history
    if sampler.normalize is not None:  # predict() maps other volumes the same way
        net.normalization = tuple(float(v) for v in sampler.normalize)
    return net


def _pix2pix_step(net, loss, opt, disc_opt, image, target, n_classes) -> torch.Tensor:
    logits = net(image)
    probs = F.softmax(logits.float(), dim=1)
    valid = (target != 255).unsqueeze(1)
    real = F.one_hot(target.clamp(max=n_classes - 1).long(), n_classes).movedim(-1, 1).float()
    real = real * valid
    disc_opt.zero_grad(set_to_none=True)
    d_loss = loss.discriminator(
        net.discriminate(image, real), net.discriminate(image, probs.detach())
    )
    d_loss.backward()
    disc_opt.step()
    opt.zero_grad(set_to_none=True)
    g_loss = loss.generator(net.discriminate(image, probs), logits, target)
    g_loss.backward()
    opt.step()
    return g_loss.detach()
