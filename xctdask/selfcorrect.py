"""``self_correct``: stage 3, the Unbiased Teacher that cleans up pseudo labels.

Starting from the stage-2 network, a teacher (an exponential moving average of the
student, :class:`xctdask.teacher.EMATeacher`) labels weakly augmented patches; voxels
whose top-class probability is below ``threshold`` are masked; the student learns from
strongly augmented views of the same patches with label-smoothed cross entropy
normalised by the number of confident voxels; the teacher then follows the student.
The original pseudo labels are **not** used for training in this stage: the sampler
may have no target at all (its target, if any, only places the patches).

This is a thin front end of :func:`xctdask.engine.fit_loop` with a
:class:`~xctdask.engine.SelfCorrectionTask`: checkpoints, exact resume, validation and
progress are the engine's. Validation mIoU (and IoU per class) is measured for the
teacher against a validation sampler's labels (ground truth when you have it, else the
pseudo labels: the history's ``validated_against`` says which).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from xctdask.engine import History, SelfCorrectConfig, SelfCorrectionTask, fit_loop, make_config
from xctdask.models.base import as_network
from xctdask.sampling import PatchSampler

__all__ = ["SelfCorrectConfig", "SelfCorrectionHistory", "self_correct"]

#: Stage 3's history is the engine's :class:`~xctdask.engine.History` (it logs the
#: teacher's mean confidence and masked fraction per step).
SelfCorrectionHistory = History


def self_correct(
    net: nn.Module,
    sampler: PatchSampler,
    config: SelfCorrectConfig | None = None,
    *,
    spatial_dims: int | None = None,
    **options: Any,
) -> nn.Module:
    """Unbiased-Teacher self-correction of a stage-2 network; returns the EMA teacher.

    Parameters
    ----------
    net : torch.nn.Module
        The stage-2 network (the student starts from it; it is trained in place).
    sampler : PatchSampler
        Where training patches come from; its target is not used for the loss.
    config : SelfCorrectConfig, optional
        All options at once; ``**options`` replace its fields.
    spatial_dims : int, optional
        For a plain ``torch.nn.Module``.
    **options
        Fields of :class:`~xctdask.engine.SelfCorrectConfig`: ``steps``, ``threshold``
        (0.9), ``ema`` (0.999), ``lr`` (1e-4), ``label_smoothing`` (0.1), ``strong``,
        ``validation``, ``batch_size``, ``val_every``, ``checkpoint``, ``resume``, ...

    Returns
    -------
    torch.nn.Module
        The teacher network, with ``history`` (:class:`SelfCorrectionHistory`).
    """
    config = make_config(SelfCorrectConfig, config, options)
    network = as_network(net, spatial_dims=spatial_dims)
    checker = config.validation if config.validation is not None else sampler
    n_classes = int(network.n_classes or 0) or int(getattr(checker, "n_classes", 0) or 0)
    teacher, history = fit_loop(network, sampler, config, SelfCorrectionTask(), n_classes=n_classes)
    teacher.history = history
    norm = sampler.normalize or getattr(net, "normalization", None)
    if norm is not None:
        teacher.normalization = tuple(float(v) for v in norm)
    return teacher
