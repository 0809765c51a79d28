"""``train``: stage 2, a network trained on patches from a :class:`PatchSampler`.

Single-process training fed by distributed sampling: the patches are cut on the Dask
workers and prefetched (see :mod:`xctdask.sampling`), the network trains where this
process runs (its GPU when there is one), with the threads the local workers leave
free. This is a thin front end of :func:`xctdask.engine.fit_loop`; the options are the
fields of :class:`xctdask.engine.FitConfig`.

* AdamW (or Adam, AdaBelief), cosine, constant or linear-decay learning rate after an
  optional warm-up, gradient clipping, bf16 autocast on CUDA.
* Weak augmentation of every batch (and, on request, noise on a fraction of them).
* Validation every ``val_every`` steps on fixed validation patches: IoU per class and
  its mean over labelled voxels, PSNR of a denoised output.
* The best validation weights are kept, checkpoints written to a folder, and a run
  resumes exactly from its last checkpoint.
* What the network does (segment, denoise, both; Pix2Pix's discriminator step) is its
  own declaration (:class:`xctdask.models.Network`), never guessed from its name. A
  plain ``torch.nn.Module`` trains too with ``spatial_dims=``.

The history is returned on the network as ``net.history`` (a :class:`History`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from xctdask.engine import FitConfig, History, SupervisedTask, evaluate, fit_loop, make_config
from xctdask.models.base import as_network
from xctdask.sampling import PatchSampler

__all__ = ["FitConfig", "History", "evaluate", "train"]


def train(
    net: nn.Module,
    sampler: PatchSampler,
    config: FitConfig | None = None,
    *,
    spatial_dims: int | None = None,
    outputs: tuple[str, ...] | None = None,
    **options: Any,
) -> nn.Module:
    """Train ``net`` on ``sampler``'s training patches; returns it (best weights loaded).

    Parameters
    ----------
    net : torch.nn.Module
        A network of :mod:`xctdask.models`, or any module (then give ``spatial_dims``,
        and ``outputs`` if it is not a segmenter); it is trained in place.
    sampler : PatchSampler
        With a ``target`` for a segmenter, with ``clean`` for a denoiser, both for a
        denoise+segment network.
    config : FitConfig, optional
        All options at once; ``**options`` replace its fields.
    spatial_dims, outputs
        Declarations for a plain ``torch.nn.Module`` (see :func:`xctdask.models.wrap`).
    **options
        Fields of :class:`~xctdask.engine.FitConfig`: ``steps``, ``lr``, ``lr_segment``,
        ``optimizer``, ``schedule``, ``warmup``, ``batch_size``, ``val_every``,
        ``val_batches``, ``grad_clip``, ``augment``, ``loss``, ``label_smoothing``,
        ``amp``, ``device``, ``threads``, ``checkpoint``, ``resume``, ``keep_best``,
        ``snapshot_every``, ``seed``, ``progress``, ...

    Returns
    -------
    torch.nn.Module
        The trained network (the module given; a plain module is returned as it was
        given, trained), with ``history`` (:class:`History`) and ``normalization``.

    Examples
    --------
    >>> import numpy as np, xctdask as xd
    >>> image = np.random.default_rng(0).random((24, 32, 32), dtype=np.float32)
    >>> sampler = xd.PatchSampler(image, (image > 0.5).astype(np.uint8), patch=(1, 16, 16))
    >>> net = xd.train(xd.models.build("unet2d", 1, 2, depth=1, f0=2), sampler,
    ...                steps=2, batch_size=2, progress=False)
    >>> len(net.history.loss)
    2
    """
    config = make_config(FitConfig, config, options)
    network = as_network(net, spatial_dims=spatial_dims, outputs=outputs)
    needs = network.required_targets()
    if "target" in needs and sampler.target is None:
        raise ValueError("training a network that segments needs a sampler with a target")
    if "clean" in needs and sampler.clean is None:
        raise ValueError(
            "this network denoises: it needs a sampler with `clean` (an aligned clean scan)"
        )
    n_classes = int(sampler.n_classes or 0) if network.segments else 0
    if network.segments:
        predicted = int(network.n_classes or 0)
        if predicted and n_classes > predicted:
            raise ValueError(
                f"the labels hold classes 0..{n_classes - 1}, but the network predicts "
                f"{predicted} classes; build it with n_classes={n_classes}"
            )
        n_classes = max(n_classes, predicted)
    trained, history = fit_loop(network, sampler, config, SupervisedTask(), n_classes=n_classes)
    net.history = history
    if sampler.normalize is not None:  # predict() maps other volumes the same way
        net.normalization = tuple(float(v) for v in sampler.normalize)
        network.normalization = net.normalization
    return net if trained is network else trained
