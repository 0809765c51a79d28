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

import numpy as np
from torch import nn

from xctdask.engine import History, SelfCorrectConfig, SelfCorrectionTask, fit_loop, make_config
from xctdask.models.base import as_network
from xctdask.sampling import PatchSampler

__all__ = ["SelfCorrectConfig", "SelfCorrectionHistory", "self_correct", "steps_for_volume"]

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


#: Passes over the volume's voxels that ``steps_for_volume`` aims stage 3 at, and the
#: bounds it keeps the steps within (see its docstring for the measurements).
PASSES = 4
STEP_BOUNDS = (150, 900)


def steps_for_volume(
    shape: tuple[int, ...],
    patch: tuple[int, ...],
    batch_size: int,
    *,
    passes: float = PASSES,
    bounds: tuple[int, int] = STEP_BOUNDS,
) -> int:
    """Stage-3 steps for a volume: ``passes`` times the steps whose batches hold as many
    target voxels as the volume, kept within ``bounds``.

    Stage 3 learns from its own teacher, so on a small volume many steps go over the
    same voxels again and again and drift with the teacher's mistakes. Measured with
    the Segmenter's defaults (600 stage-2 steps, teacher snapshots every 150 stage-3
    steps, mIoU over the whole volume; 2 cores, 2026-11-30):

    - two 96×256×256 phantoms built with porespy and another CT model (48 steps a
      pass at patch 128, batch 8): fibre 0.413 after stage 2, 0.407 after 150 stage-3
      steps, falling to 0.367 at 900; sand 0.589, best 0.592 at 300–450, 0.583 at 900;
    - the library's own 64×256×256 fibre-composite LQ phantom (32 steps a pass):
      0.949 after stage 2, 0.945 at 150, falling steadily to 0.881 at 900;
    - the library's 128×512×512 phantom (256 steps a pass; ``end_to_end.py``, 400
      stage-2 steps): 900 steps gained 11–17 points over stage 2.

    Four passes give 192, 150 (the lower bound) and 900 (the upper) steps on these.
    Where stage 3 loses, the fewer steps lose least; where it gained, the steps are
    kept. Bigger volumes keep 900: no larger number has been measured.

    Parameters
    ----------
    shape : tuple of int
        The volume's shape ``(z, y, x)``.
    patch : tuple of int
        A training patch's target shape (``(1, s, s)`` for slice networks).
    batch_size : int
    passes : float
    bounds : (int, int)

    Examples
    --------
    >>> steps_for_volume((96, 256, 256), (1, 128, 128), 8)
    192
    >>> steps_for_volume((128, 512, 512), (1, 128, 128), 8)
    900
    >>> steps_for_volume((8, 64, 64), (1, 64, 64), 8)
    150
    """
    volume = float(np.prod(shape))
    per_step = float(np.prod(patch)) * batch_size
    if per_step <= 0 or volume <= 0:
        raise ValueError(f"shape {shape} and patch {patch} must hold voxels")
    low, high = bounds
    return int(min(max(round(passes * volume / per_step), low), high))
