"""``segment`` and ``Segmenter``: the whole pipeline behind one call.

* **No labels** (unsupervised): stage-1 pseudo labels (k-means on the histogram, inside
  the field of view) → stage 2 (a network trained on them) → stage 3 (Unbiased-Teacher
  self-correction) → seamless inference (:func:`xctdask.predict`).
* **Labels**, sparse (a few annotated slices, 255 elsewhere) or dense: supervised
  training, then inference.
* **clean** (a high-quality scan of the same sample, aligned): the stacked
  denoise+segment network, trained to map the low-quality scan to the clean scan and to
  the labels (given, or pseudo labels of the clean scan).

``Segmenter`` fits once and transforms many volumes, e.g. every time step of a 4D
``(t, z, y, x)`` series with the network trained on the high-quality scan. The global
intensity normalisation (mean and std of the fitted volume, from the histogram pass)
is stored with the network, so other volumes map the same way.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
import xarray as xr

from xctdask._files import check_new_file
from xctdask.backend import UNLABELLED, as_dask, check_same_shape, unwrap, validate_volume
from xctdask.regions import Renormalize, register_pointwise

__all__ = ["Segmenter", "segment"]

_FORMAT = "xctdask-segmenter"
STACKS = ("volume", "slices")
#: with fewer annotated slices than this, all of them train (no validation slab)
FEW_ANNOTATED_SLICES = 10


def _stage(progress: bool, text: str) -> None:
    if progress:
        import sys

        print(f"[xctdask] {text}", file=sys.stderr, flush=True)


@dataclass
class Segmenter:
    """Fit once (on an HQ scan, a few annotated slices, or nothing), transform many.

    Parameters
    ----------
    n_classes : int
        Number of classes (phases).
    model : str
        A 2-D/2.5-D or 3-D network of the zoo: ``"unet2d"`` (default), ``"unet3d"``,
        ``"denseuseg2d"``; with ``clean`` the stacked network is used instead.
    context : int
        Adjacent slices a 2.5D network sees (odd; 1 for plain 2-D).
    skip : bool or "auto"
        U-Net skip connections. ``"auto"`` (default): off when the network learns from
        pseudo labels (in the SR-CT self-correction paper's Table I the U-Net without
        skips, "U-Net*", was the best stage-3 model, 51.0 against 40.3 mIoU with skips;
        it cannot copy noisy pseudo labels through), on with annotations (true labels
        have fine structure worth copying: on the real battery slices with 3 annotated
        slices, 0.564 mIoU with skips against 0.515 without).
    depth, f0 : int
        U-Net depth and first-level feature maps.
    patch : int
        Training patch size in y and x (and z for 3-D networks, capped by the volume).
    steps : int
        Optimisation steps of stage 2.
    steps_self_correct : int or "auto"
        Optimisation steps of stage 3 (0 skips it). ``"auto"`` (default): four passes
        over the volume's voxels, within 150..900
        (:func:`xctdask.selfcorrect.steps_for_volume`: on small volumes more steps
        drift with the teacher's mistakes); the number chosen is kept as
        ``steps_self_correct_``.
    pretrain_steps : int
        With annotations: first train this many steps on the stage-1 pseudo labels of
        the whole volume (its clusters matched to the annotated classes on the
        annotated voxels by the Hungarian algorithm), then fine-tune on the
        annotations for ``steps``. 0 (default) trains on the annotations only: on the
        real battery slices with 3 annotated slices, 300 pretraining steps gave 0.576
        mIoU against 0.582 without, both without class weights (the pseudo labels
        there score 0.295).
    self_train_steps : int
        With annotations: after stage 2, this many steps of the labelled + unlabelled
        Unbiased Teacher (:func:`xctdask.self_correct` with ``labelled=``): the student
        learns from the annotated patches and from the teacher's confident labels on
        patches of the whole volume; the teacher is kept. 0 (default) skips it: on the
        real battery slices with 3 annotated slices, 300 such steps after 300 stage-2
        steps moved mIoU from 0.603 to 0.605 (0.607 at ``lr_self_correct=1e-3``; both
        measured with ``class_keep=0``) for 2.2× the stage-2 time.
    lr, lr_self_correct : float
        Learning rates of stage 2 and stage 3.
    class_weights : bool or "auto"
        Weigh stage 2's cross entropy by class, ``median(P/S)/(P/S)`` counted on
        training patches (see :class:`xctdask.engine.FitConfig`), so a thin or rare
        phase counts as much as the bulk. ``"auto"`` (default): on with annotations;
        with pseudo labels the network decides (the stacked network weighs, the U-Nets
        do not). Measured with 3 annotated slices (300 steps): on the real battery
        slices 0.603 mIoU with, 0.582 without; on the fibre-composite phantom's LQ
        scan 0.971 with, 0.977 without.
    threshold, ema : float
        Stage-3 teacher confidence threshold and EMA decay.
    class_keep : float
        Stage 3: every class the teacher predicts in a batch keeps at least this share
        of its voxels (its most confident) as targets even below ``threshold``, so a
        less certain class (pores, a thin phase) is still taught instead of shrinking
        step by step. 0 is the Unbiased Teacher as its paper defines it. The default
        0.1 was chosen on LQ phantoms, stage 3 after 400 stage-2 steps, 900 steps:
        on the 128×512×512 fibre composite (24 slices scored) stage 2 scores 0.680
        mIoU, stage 3 0.644 with 0, **0.692** with 0.1, 0.691 with 0.2 and 0.730 with
        0.5 (on the 64×256×256 one: stage 2 0.926, stage 3 0.942 with 0, 0.955 with
        0.1); on the 64×192×192 crystal phantom stage 3 scores 0.724 with 0, 0.723
        with 0.1, 0.706 with 0.2 and 0.620 with 0.5; on the corrosion phantom 0.688
        with 0 and 0.727 with 0.1. The full ``benchmarks/end_to_end.py`` run (all
        slices scored; stage 2 0.653 on the 128×512×512 phantom) disagrees there: 0
        gave 0.819 against 0.765 with 0.1 (64×256×256: 0.945 against 0.956). These
        are single runs, and stage 3's run-to-run spread on that phantom is as large
        as the differences.
    pseudo_method : {"kmeans", "otsu", "gmm"}
        Stage-1 clustering; ``mask="cylinder"`` keeps it inside the field of view.
    pseudo_sigma : float or "auto"
        Scale (voxels) of a local mean that stage 1 clusters instead of the raw voxel
        values: a Gaussian average over the field of view (``PseudoLabeler(
        features="mean")``; in-plane only with ``stack="slices"``), so that noise does
        not scatter the pseudo labels; it costs one more pass over the scan. 0
        (default) clusters the raw values, as the SR-CT paper's stage 1 does.
        ``"auto"``: 1.0 when the scan's noise (:func:`xctdask.metrics.noise_level`) is
        at least an eighth of the smallest gap between the raw clusters' centres, else 0
        (:func:`xctdask.pseudolabels.local_mean_sigma`). The value used is kept as
        ``pseudo_sigma_``. Off by default because the network already does what the
        average does: with 1.0 the pseudo labels themselves improve (library
        fibre composite 64×256×256 0.666 → 0.956 mIoU; independent sand 0.514 → 0.578,
        fibre 0.355 → 0.431), but the whole pipeline with the other defaults moved
        from 0.945 to 0.937, 0.590 to 0.569 and 0.405 to 0.421 (LQ scans, one run
        each).
    tile, overlap, axes, batch_size : inference settings of :func:`xctdask.predict`.
    class_names : list of str, optional
    seed : int
    progress : bool
        Progress per stage on stderr, bars for training.
    preset : str, optional
        A paper's setting (:mod:`xctdask.presets`): it replaces the network and how it
        trains (model, its options, patch, context, batch size, loss, optimiser,
        schedule, augmentation); ``n_classes`` and the steps stay these settings.
    stack : {"volume", "slices"}
        ``"volume"``: z is a contiguous axis (2.5D context, z-slab validation).
        ``"slices"``: the volume is a stack of unrelated 2-D images (PXCT or SEM slices,
        slices from several scans): each is segmented on its own (context 1) and no
        z-slab split is made. Any stack of ≥ 1 slice is accepted either way; when z is
        too short for a validation slab, training uses every slice without validation
        and a warning says so.

    Examples
    --------
    >>> import xctdask as xd
    >>> ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=0)
    >>> seg = xd.Segmenter(3, steps=20, steps_self_correct=10, patch=32, depth=2, f0=4,
    ...                    context=3, progress=False).fit(ds.hq)
    >>> labels = seg.transform(ds.lq)   # lazy
    >>> labels.dtype, labels.shape
    (dtype('uint8'), (24, 64, 64))
    """

    n_classes: int = 3
    model: str = "unet2d"
    context: int = 7
    skip: bool | str = "auto"
    depth: int = 4
    f0: int = 16
    patch: int = 128
    steps: int = 600
    steps_self_correct: int | str = "auto"
    pretrain_steps: int = 0
    self_train_steps: int = 0
    lr: float = 3e-3
    lr_self_correct: float = 1e-4
    class_weights: bool | str = "auto"
    threshold: float = 0.9
    class_keep: float = 0.1
    ema: float = 0.999
    batch_size: int = 8
    pseudo_method: str = "kmeans"
    pseudo_sigma: float | str = 0.0
    mask: str | None = "cylinder"
    tile: int | None = None
    overlap: float = 0.5
    axes: str = "z"
    class_names: list[str] | None = None
    seed: int = 0
    progress: bool = True
    preset: str | None = None
    stack: str = "volume"
    history: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ fitting
    def validate(self) -> None:
        """Check every setting that ``fit`` and ``transform`` will use, now.

        Called first by :meth:`fit` and :meth:`transform`, so a bad inference setting
        (``tile=0``, ``overlap=1.0``, ``axes="q"``) fails before hours of training.

        Raises
        ------
        ValueError, TypeError
            Naming the setting and what it accepts.
        """
        from xctdask import models
        from xctdask.models import available
        from xctdask.pseudolabels import METHODS

        def integer(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not ok or value < low or (high is not None and value > high):
                span = f"{low}..{high}" if high is not None else f"≥ {low}"
                raise ValueError(f"{name} must be an integer {span}, got {value!r}")

        def number(name: str, low: float, high: float, *, open_high: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
            if not ok or not (low <= value and (value < high if open_high else value <= high)):
                bracket = ")" if open_high else "]"
                raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value!r}")

        integer("n_classes", 2, 254)
        usable = [m for m in available() if m != "stacked-denseuseg"]
        if self.preset is not None:
            from xctdask.presets import get

            get(self.preset)  # an unknown name fails here, before any data is read
        if self.class_weights not in (True, False, "auto"):
            raise ValueError(
                f"class_weights must be True, False or 'auto', got {self.class_weights!r}"
            )
        if self.skip not in (True, False, "auto"):
            raise ValueError(f"skip must be True, False or 'auto', got {self.skip!r}")
        if self.model not in usable:
            raise ValueError(
                f"model must be one of {usable} (with clean=, the stacked network is used), "
                f"got {self.model!r}"
            )
        if self.stack not in STACKS:
            raise ValueError(f"stack must be one of {STACKS}, got {self.stack!r}")
        if self.stack == "slices" and models.registry.spatial_dims(self.model) == 3:
            raise ValueError(
                f"stack='slices' segments each slice on its own: choose a 2-D model, not "
                f"{self.model!r}"
            )
        integer("context", 1)
        if self.context % 2 == 0:
            raise ValueError(f"context must be odd (slices above and below), got {self.context}")
        integer("depth", 1, 7)
        integer("f0", 1)
        integer("patch", 8)
        integer("steps", 1)
        steps3 = self.steps_self_correct
        if steps3 != "auto" and (
            not isinstance(steps3, (int, np.integer)) or isinstance(steps3, bool) or steps3 < 0
        ):
            raise ValueError(f"steps_self_correct must be 'auto' or an integer ≥ 0, got {steps3!r}")
        integer("pretrain_steps", 0)
        integer("self_train_steps", 0)
        integer("batch_size", 1)
        integer("seed", 0)
        number("lr", 0.0, 1.0)
        number("lr_self_correct", 0.0, 1.0)
        if self.lr <= 0 or self.lr_self_correct <= 0:
            raise ValueError("lr and lr_self_correct must be positive")
        number("threshold", 0.0, 1.0)
        number("class_keep", 0.0, 1.0)
        number("ema", 0.0, 1.0)
        number("overlap", 0.0, 1.0, open_high=True)
        if self.pseudo_method not in METHODS:
            raise ValueError(f"pseudo_method must be one of {METHODS}, got {self.pseudo_method!r}")
        if self.pseudo_sigma != "auto":
            number("pseudo_sigma", 0.0, 64.0)
        if self.mask not in (None, "cylinder"):
            raise ValueError(f"mask must be None or 'cylinder', got {self.mask!r}")
        if self.tile is not None:
            integer("tile", 8)
        axes = self.axes
        if (
            not isinstance(axes, str)
            or not axes
            or any(a not in "zyx" for a in axes)
            or len(set(axes)) != len(axes)
        ):
            raise ValueError(
                f"axes must be distinct letters of 'zyx' (e.g. 'z', 'zyx'), got {axes!r}"
            )
        if self.class_names is not None and (
            len(self.class_names) != self.n_classes
            or not all(isinstance(n, str) for n in self.class_names)
            or len(set(self.class_names)) != len(self.class_names)
        ):
            raise ValueError(
                f"class_names must be {self.n_classes} different strings (one per class), "
                f"got {self.class_names!r}"
            )

    def _check(self, vol: Any, labels: Any, clean: Any, like: Any = None) -> None:
        self.validate()
        validate_volume(vol)
        if like is not None:
            validate_volume(like, name="like")
        for other, name in ((labels, "labels"), (clean, "clean")):
            if other is not None:
                validate_volume(other, name=name)
                check_same_shape(other, vol, (name, "volume"))
        if labels is not None:
            dtype = np.dtype(unwrap(labels).dtype)
            if dtype.kind == "b":  # True = class 1, or True = annotated? say which
                raise TypeError(
                    "labels are boolean: pass class numbers as integers (0, 1, …; 255 = "
                    "unlabelled), e.g. mask.astype(np.uint8) for classes 0 and 1"
                )
            if dtype.kind not in "iu":
                raise TypeError(f"labels must be integers (255 = unlabelled), got {dtype}")

    def _check_label_values(self, labels: Any) -> None:
        """One pass over the labels: values must be < n_classes or 255."""
        data = as_dask(unwrap(labels))
        valid = ((data >= 0) & (data < self.n_classes)) | (data == 255)
        bad_values = da.unique(da.where(valid, 255, data))
        per_slice = (data != 255).sum(axis=(1, 2))
        classes = da.where(valid & (data != 255), data, self.n_classes).astype(np.int64)
        per_class = da.bincount(classes.ravel(), minlength=self.n_classes + 1)
        n_bad, per_slice, found, per_class = da.compute(
            (~valid).sum(), per_slice, bad_values, per_class
        )
        n_labelled = int(per_slice.sum())
        self._annotated = np.flatnonzero(np.asarray(per_slice))
        if n_bad:
            found = np.asarray(found)[np.asarray(found) != 255]
            hint = (
                ": mark unlabelled voxels with 255, e.g. np.where(labels < 0, 255, labels)"
                if found.min() < 0
                else ""
            )
            raise ValueError(
                f"labels hold {int(n_bad)} voxels with values {found.tolist()[:8]} outside "
                f"0..{self.n_classes - 1} (255 marks unlabelled voxels){hint}"
            )
        if n_labelled == 0:
            raise ValueError("labels hold no labelled voxel (all 255)")
        missing = np.flatnonzero(np.asarray(per_class)[: self.n_classes] == 0).tolist()
        if missing:
            names = [self.class_names[c] for c in missing] if self.class_names else missing
            warnings.warn(
                f"the labels hold no voxel of class {', '.join(map(str, names))} (of "
                f"{self.n_classes}): the network cannot learn from them what that class looks "
                "like and will rarely or never predict it; annotate a few voxels of every "
                "class",
                UserWarning,
                stacklevel=3,
            )

    def fit(
        self, vol: Any, labels: Any = None, clean: Any = None, *, like: Any = None
    ) -> Segmenter:
        """Train the network on ``vol`` (**computes**: the histogram pass, the sampler's
        statistics pass and training; with ``pretrain_steps``, also one pass matching the
        pseudo labels to the annotations; with ``pseudo_sigma``, a histogram pass over
        the local mean, and for ``"auto"`` a few slices for the noise level).

        Parameters
        ----------
        vol : array or DataArray
            The volume to learn from (with ``clean``: the low-quality scan).
        labels : array, optional
            Dense or sparse labels (255 = unlabelled); none for the unsupervised path.
        clean : array, optional
            A high-quality scan of the same sample, aligned with ``vol``.
        like : array, optional
            A low-quality scan the network will be applied to (another time step of a
            4-D series; it need not be aligned with ``vol``). The noise power spectra
            of both scans are measured from adjacent slices
            (:func:`xctdask.metrics.noise_spectrum`, each scan normalised by its own
            histogram statistics; **computes** a histogram pass over ``like``), and
            half of the training patches get the noise ``vol`` lacks, with the LQ
            scan's texture (:func:`xctdask.augment.degrade`), in stage 2 and for stage
            3's student. Its level and spectrum are kept as ``degrade_sigma_`` and
            ``degrade_spectrum_``. (With one slice, or ``stack="slices"``, white noise
            at the level of :func:`xctdask.metrics.noise_level`.) (When an LQ scan
            *aligned* with the HQ one exists, train on it instead: ``fit(lq, labels)``,
            or ``fit(lq, clean=hq)``.)

        Examples
        --------
        >>> import xctdask as xd
        >>> ds = xd.phantoms.make("fibre-composite", (16, 48, 48), seed=0)
        >>> seg = xd.Segmenter(3, steps=4, steps_self_correct=0, patch=32, depth=1, f0=2,
        ...                    context=1, progress=False).fit(ds.hq, like=ds.lq)
        >>> seg.degrade_sigma_ > 0
        True
        """
        from xctdask.pseudolabels import PseudoLabeler
        from xctdask.sampling import PatchSampler
        from xctdask.selfcorrect import self_correct, steps_for_volume
        from xctdask.train import train

        self._check(vol, labels, clean, like)
        self._preset(clean is not None)  # a preset that does not fit the data fails now
        self.dtype_ = str(np.dtype(unwrap(vol).dtype))  # the grey values transform expects
        if labels is not None:
            self._check_label_values(labels)
        torch.manual_seed(self.seed)
        source = clean if clean is not None else vol
        _stage(self.progress, "histogram pass and intensity normalisation")
        labeler = PseudoLabeler(self.n_classes, self.pseudo_method, mask=self.mask).fit(source)
        self.normalization_ = _histogram_stats(labeler.histogram_)
        if clean is not None:  # the network sees the LQ scan: normalise it by its own stats
            lq_stats = PseudoLabeler(self.n_classes, self.pseudo_method, mask=self.mask).fit(vol)
            self.normalization_ = _histogram_stats(lq_stats.histogram_)
            self.clean_normalization_ = _histogram_stats(labeler.histogram_)
        self.pseudo_labeler_ = labeler
        self.degrade_sigma_, self.degrade_spectrum_ = 0.0, None
        if like is not None:
            self.degrade_sigma_, self.degrade_spectrum_ = self._extra_noise(vol, like)
        pretrain_target = None
        wants_pseudo = labels is None or (self.pretrain_steps > 0 and clean is None)
        self.pseudo_sigma_ = 0.0
        if wants_pseudo:
            self.pseudo_sigma_ = self._pseudo_sigma(source, labeler)
        if self.pseudo_sigma_ > 0:
            _stage(self.progress, "stage 1: histogram pass over the local mean")
            sigma = self.pseudo_sigma_
            labeler = PseudoLabeler(
                self.n_classes,
                self.pseudo_method,
                mask=self.mask,
                features="mean",
                sigma=(0.0, sigma, sigma) if self.stack == "slices" else sigma,
            ).fit(source)
            self.pseudo_labeler_ = labeler
        if labels is None:
            _stage(self.progress, "stage 1: pseudo labels")
            target = labeler.predict(source)
            self.mode_ = "unsupervised"
        else:
            target = labels
            self.mode_ = "supervised"
            if self.pretrain_steps > 0 and clean is None:
                from xctdask.metrics import apply_mapping, match_labels

                _stage(self.progress, "stage 1: pseudo labels to pretrain on")
                pseudo = as_dask(unwrap(labeler.predict(source)))
                outside = pseudo == UNLABELLED  # outside the field of view: not matched
                mapping = match_labels(
                    da.where(outside, 0, pseudo),
                    da.where(outside, UNLABELLED, as_dask(unwrap(labels))),
                    self.n_classes,
                    self.n_classes,
                )
                pretrain_target = apply_mapping(pseudo, mapping)
        if clean is not None:
            self.mode_ += "+denoise"
        preset = self._preset(clean is not None)
        net = preset.build(self.n_classes) if preset else self._network(clean is not None)
        if self.stack == "slices" and int(net.context) != 1:
            raise ValueError(
                f"stack='slices' segments each slice on its own, but the network sees "
                f"{int(net.context)} slices: use context=1 (or a preset without 2.5D context)"
            )
        context = int(net.context)
        patch = net.suggest_patch(tuple(unwrap(vol).shape), preset.patch if preset else self.patch)
        if clean is not None:  # the clean scan in the LQ scan's grey values
            rule = Renormalize(*self.clean_normalization_, *self.normalization_)
            raw = as_dask(unwrap(clean))
            clean_data = register_pointwise(rule(raw, None), raw, rule)
        else:
            clean_data = None

        def make_sampler(split: tuple[float, float, float], on: Any = target) -> PatchSampler:
            return PatchSampler(
                vol,
                on,
                clean=clean_data,
                patch=patch,
                context=context,
                n_classes=self.n_classes,
                split=split,
                normalize=self.normalization_,
                seed=self.seed,
                target_name="annotations" if on is labels else "pseudo labels",
            )

        sampler = self._sampler(make_sampler, unwrap(vol).shape[0], labels is not None)
        _stage(self.progress, f"stage 2: training {net.config['name']} for {self.steps} steps")
        stage2 = {"lr": self.lr, "batch_size": self.batch_size}
        stage2["degrade_sigma"] = self.degrade_sigma_
        stage2["degrade_spectrum"] = self.degrade_spectrum_
        stage2["class_weights"] = self.class_weights  # "auto": the network's own wish
        if self.class_weights == "auto" and labels is not None:
            stage2["class_weights"] = True
        stage2.update(preset.fit_options("train") if preset else {})
        if pretrain_target is not None:
            _stage(self.progress, f"pretraining on pseudo labels for {self.pretrain_steps} steps")
            net = train(
                net,
                make_sampler((1.0, 0.0, 0.0), pretrain_target),
                steps=self.pretrain_steps,
                seed=self.seed,
                progress=self.progress,
                **stage2,
            )
            self.history["pretrain"] = net.history.to_dict()
        net = train(
            net, sampler, steps=self.steps, seed=self.seed, progress=self.progress, **stage2
        )
        self.history["stage2"] = net.history.to_dict()
        # stage 3: the Unbiased Teacher, unsupervised on pseudo labels, or with the
        # annotations next to the teacher (the labelled + unlabelled form)
        steps3 = self.self_train_steps
        if labels is None:
            steps3 = self.steps_self_correct
            if steps3 == "auto":
                steps3 = steps_for_volume(unwrap(vol).shape, patch, self.batch_size)
            self.steps_self_correct_ = steps3
        if clean is None and net.segments and steps3 > 0:
            stage3 = {"lr": self.lr_self_correct, "batch_size": self.batch_size}
            stage3["degrade_sigma"] = self.degrade_sigma_
            stage3["degrade_spectrum"] = self.degrade_spectrum_
            if labels is None:
                auto = self.steps_self_correct == "auto"
                chosen = " (auto: four passes over the volume)" if auto else ""
                _stage(self.progress, f"stage 3: self-correction for {steps3} steps{chosen}")
                name, patches = "stage3", sampler
            else:
                _stage(self.progress, f"self-training on the annotations and the teacher "
                       f"for {steps3} steps")  # fmt: skip
                name, patches = "self_train", make_sampler((1.0, 0.0, 0.0), None)
                stage3.update(labelled=sampler, validation=sampler)
                stage3["class_weights"] = self.history["stage2"]["class_weights"] or False
            stage3.update(preset.fit_options("self_correct") if preset else {})
            net = self_correct(
                net,
                patches,
                steps=steps3,
                threshold=self.threshold,
                class_keep=self.class_keep,
                ema=self.ema,
                seed=self.seed,
                progress=self.progress,
                **stage3,
            )
            self.history[name] = net.history.to_dict()
        net.normalization = self.normalization_
        net.class_names = self.class_names
        self.network_ = net.eval()
        return self

    def _pseudo_sigma(self, source: Any, labeler: Any) -> float:
        """``pseudo_sigma``, or for ``"auto"`` the scale the scan's noise calls for
        (reads a few slices)."""
        if self.pseudo_sigma != "auto":
            return float(self.pseudo_sigma)
        from xctdask.metrics import noise_level
        from xctdask.pseudolabels import local_mean_sigma

        return local_mean_sigma(noise_level(source), labeler.centers_)

    def _extra_noise(self, vol: Any, like: Any) -> tuple[float, np.ndarray | None]:
        """The noise ``like`` has beyond ``vol``'s, in ``vol``'s normalised grey values:
        its standard deviation and its 2-D power spectrum (the difference of the scans'
        :func:`~xctdask.metrics.noise_spectrum`). White (Immerkær's levels, no spectrum)
        when a scan has a single slice or the slices are unrelated (``stack="slices"``),
        where adjacent slices say nothing about noise."""
        from xctdask.metrics import noise_level, noise_spectrum
        from xctdask.pseudolabels import PseudoLabeler

        like_stats = PseudoLabeler(self.n_classes, self.pseudo_method, mask=self.mask).fit(like)
        like_normalization = _histogram_stats(like_stats.histogram_)
        shapes = [tuple(unwrap(v).shape) for v in (vol, like)]
        tile = min(64, *(side for shape in shapes for side in shape[1:]))
        if self.stack == "slices" or min(s[0] for s in shapes) < 2 or tile < 8:
            theirs = noise_level(like, normalize=like_normalization)
            ours = noise_level(vol, normalize=self.normalization_)
            return float(np.sqrt(max(theirs**2 - ours**2, 0.0))), None
        theirs = noise_spectrum(
            like,
            tile=tile,
            normalize=like_normalization,
            field_of_view=getattr(like_stats, "field_of_view_", None),
        )
        ours = noise_spectrum(
            vol,
            tile=tile,
            normalize=self.normalization_,
            field_of_view=getattr(self.pseudo_labeler_, "field_of_view_", None),
        )
        extra = np.maximum(theirs - ours, 0.0)
        sigma = float(np.sqrt(extra.mean()))
        return sigma, (extra if sigma > 0 else None)

    def _sampler(self, make_sampler, nz: int, labelled: bool):
        """Training patches with a z-slab validation split where the data allow one;
        otherwise every slice (and every annotated slice) trains, and a warning says so."""
        everything = (1.0, 0.0, 0.0)
        annotated = getattr(self, "_annotated", None) if labelled else None
        if self.stack == "slices":
            return make_sampler(everything)  # unrelated slices: no z slabs
        sparse = annotated is not None and len(annotated) < nz
        if sparse and len(annotated) < FEW_ANNOTATED_SLICES:
            warnings.warn(
                (
                    f"1 annotated slice (z = {annotated.tolist()}): it trains, none is held "
                    "out for validation; the last weights are kept"
                    if len(annotated) == 1
                    else f"{len(annotated)} annotated slices (z = {annotated.tolist()}): all "
                    "of them train, none is held out for validation; the last weights are kept"
                ),
                stacklevel=3,
            )
            return make_sampler(everything)
        try:
            sampler = make_sampler((0.8, 0.2, 0.0))  # validation picks the best weights
        except ValueError:
            warnings.warn(
                f"{nz} slices are too short for a z-slab validation split with a "
                f"{self.context}-slice context: training on all slices without validation, "
                "keeping the last weights",
                stacklevel=3,
            )
            return make_sampler(everything)
        if not sampler.has_labels("validation"):
            warnings.warn(
                "no labelled voxel lies in the validation slab (the last 20 % of z): "
                "training on all slices without validation, keeping the last weights",
                stacklevel=3,
            )
            return make_sampler(everything)
        if annotated is not None:
            unused = [
                int(z)
                for z in annotated
                if not any(
                    lo <= z < hi for lo, hi in map(sampler.centre_range, ("train", "validation"))
                )
            ]
            if unused:
                warnings.warn(
                    f"annotated slices z = {unused} lie in the margin between the training "
                    "and validation slabs and are not used; annotate fewer than "
                    f"{FEW_ANNOTATED_SLICES} slices to train on all of them, or move them",
                    stacklevel=3,
                )
        return sampler

    def _preset(self, denoise: bool):
        """The preset, checked against the data given (a denoiser needs a clean scan)."""
        if self.preset is None:
            return None
        from xctdask.presets import get

        preset = get(self.preset)
        stacked = preset.model == "stacked-denseuseg"
        if denoise and not stacked:
            raise ValueError(
                f"preset {self.preset!r} has no denoiser: with clean= use "
                "preset='stacked-denseuseg' (or no preset)"
            )
        if stacked and not denoise:
            raise ValueError(
                "preset 'stacked-denseuseg' denoises and segments: give the clean (HQ) scan "
                "as clean="
            )
        return preset

    # ---------------------------------------------------------------- inference
    def _network(self, denoise: bool):
        """The network the settings describe (the stacked one when a clean scan is
        given); its declarations decide the rest (patch, context, stage 3)."""
        from xctdask import models

        if denoise:
            return models.build(
                "stacked-denseuseg",
                1,
                self.n_classes,
                dims=models.registry.spatial_dims(self.model),
                k0=self.f0,
                growth=self.f0,
                n_blocks=self.depth,
                modules_per_block=2,
            )
        if self.model in ("unet2d", "unet3d"):
            skip = (
                self.skip
                if self.skip != "auto"
                else getattr(self, "mode_", "").startswith("supervised")
            )
            options = {"depth": self.depth, "f0": self.f0, "skip": bool(skip)}
            if self.model == "unet2d":
                options["context"] = 1 if self.stack == "slices" else self.context
            return models.build(self.model, 1, self.n_classes, **options)
        if self.model == "pix2pix":  # the PXCT paper's segmenter
            return models.build("pix2pix", 1, self.n_classes, depth=self.depth, f0=self.f0)
        return models.build(self.model, 1, self.n_classes)

    def _require_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise RuntimeError("this Segmenter is not fitted: call fit() or load() first")
        fitted = int(getattr(self.network_, "n_classes", self.n_classes))
        if self.n_classes != fitted:
            raise ValueError(
                f"this Segmenter was fitted for {fitted} classes; n_classes is now "
                f"{self.n_classes}. Fit again to change the number of classes"
            )

    def transform(self, vol: Any, *, output: str = "labels", flips: bool = False) -> xr.DataArray:
        """Segment a volume, or every time step of a ``(t, z, y, x)`` series, lazily.

        The stored normalisation maps ``vol`` like the fitted volume. Returns uint8
        labels (or ``output`` of :func:`xctdask.predict`); for a 4-D input a ``t`` dim
        leads. ``output="denoised"`` of a Segmenter fitted with a clean scan comes back
        in the clean scan's grey values (what it learned to produce), not the input's.

        ``flips=True`` is test-time augmentation: the class probabilities of the volume
        and of its y-, x- and y+x-mirrored copies, mirrored back, are averaged before
        the labels are taken (4× the network time; for ``labels``, ``probabilities``
        and ``confidence``).
        """
        from xctdask.inference import predict

        self._require_fitted()
        self.validate()
        if not isinstance(flips, (bool, np.bool_)):
            raise TypeError(f"flips must be True or False, got {flips!r}")
        data = unwrap(vol)
        if getattr(data, "ndim", 0) == 4:  # each step read from the store by its blocks
            from xctdask.io.open import each_time_step

            return each_time_step(lambda s: self.transform(s, output=output, flips=flips), vol)
        self._check_grey_values(data)
        if flips:
            return self._flipped(vol, output)
        result = predict(
            vol,
            self.network_,
            output=output,
            tile=self.tile,
            overlap=self.overlap,
            axes=self.axes,
            batch_size=self.batch_size,
            normalize=self.normalization_,
        )
        if output == "denoised" and hasattr(self, "clean_normalization_"):
            # the network learned the clean scan standardised; predict undid the LQ
            # scan's standardisation: redo it with the clean scan's, voxel-wise and lazily
            (lq_mean, lq_std), (mean, std) = self.normalization_, self.clean_normalization_
            result = ((result - lq_mean) * (std / lq_std) + mean).astype(np.float32)
            result.attrs["grey_values"] = "the clean scan's"
        return result

    def _check_grey_values(self, data: Any) -> None:
        """Warn when ``data`` stores its grey values in another type than the fitted
        volume (integers for floats, 8 for 16 bits, signed for unsigned): the fit's
        normalisation is applied as it is, so a volume rescaled or offset in a
        conversion would be segmented wrongly without a word. Floats of any width pass."""
        fitted = getattr(self, "dtype_", None)  # absent in older Segmenter files
        given = getattr(data, "dtype", None)
        if fitted is None or given is None:
            return
        fitted, given = np.dtype(fitted), np.dtype(given)
        if fitted == given or (fitted.kind == "f" and given.kind == "f"):
            return
        mean, std = self.normalization_
        warnings.warn(
            f"this Segmenter was fitted on {fitted} grey values and is given {given}: the "
            f"fit's normalisation (mean {mean:.4g}, std {std:.4g}) is applied as it is, so "
            "if the conversion rescaled or offset the grey values the labels will be wrong; "
            "convert the volume back, or fit on this one",
            UserWarning,
            stacklevel=3,
        )

    def _flipped(self, vol: Any, output: str) -> xr.DataArray:
        """Probabilities averaged over the four in-plane mirror images (lazy)."""
        if output not in ("labels", "probabilities", "confidence"):
            raise ValueError(
                f"flips=True works for labels, probabilities or confidence, not {output!r}"
            )
        image = (
            vol
            if isinstance(vol, xr.DataArray)
            else xr.DataArray(as_dask(unwrap(vol)), dims=("z", "y", "x"))
        )
        total = None
        for axes in ((), ("y",), ("x",), ("y", "x")):
            flip = {a: slice(None, None, -1) for a in axes}
            mirrored = image.isel(flip)
            probs = self.transform(mirrored, output="probabilities").isel(flip)
            total = probs.data if total is None else total + probs.data
        mean = total / 4
        dims = ("class", *image.dims)
        if output == "probabilities":
            return xr.DataArray(mean.astype(np.float32), dims=dims)
        if output == "confidence":
            return xr.DataArray(mean.max(axis=0).astype(np.float32), dims=image.dims)
        finite = da.isfinite(mean).all(axis=0)
        labels = da.where(finite, da.nan_to_num(mean).argmax(axis=0), UNLABELLED)
        labels = labels.astype(np.uint8)
        return xr.DataArray(labels, dims=image.dims)

    def fit_transform(self, vol: Any, labels: Any = None, clean: Any = None) -> xr.DataArray:
        return self.fit(vol, labels, clean).transform(vol)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """One file: weights, network config, normalisation, class names, settings,
        training history and the xctdask version."""
        from xctdask import __version__

        self._require_fitted()
        path = check_new_file(path, overwrite)
        settings = {k: v for k, v in asdict(self).items() if k != "history"}
        state = {
            "format": _FORMAT,
            "version": __version__,
            "settings": json.dumps(settings),
            "history": json.dumps(self.history),
            "mode": self.mode_,
            "config": self.network_.config,
            "state_dict": {k: v.cpu() for k, v in self.network_.state_dict().items()},
            "normalization": list(self.normalization_),
            "clean_normalization": (
                list(self.clean_normalization_) if hasattr(self, "clean_normalization_") else None
            ),
            "class_names": self.class_names,
            # what fit chose ("auto" settings), so a loaded Segmenter reports it too
            "fitted": {
                name: getattr(self, name)
                for name in _CHOSEN_IN_FIT
                if getattr(self, name, None) is not None
            },
        }
        from xctdask.models.store import atomic_save

        return atomic_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Segmenter:
        """Load a Segmenter written by :meth:`save`."""
        from xctdask.io.locations import location
        from xctdask.models import build
        from xctdask.models.store import read_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no segmenter file at {path}")
        state = read_file(path)
        if state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not an xctdask Segmenter file")
        seg = cls(**json.loads(state["settings"]))
        seg.history = json.loads(state["history"])
        config = dict(state["config"])
        net = build(config.pop("name"), **config)
        net.load_state_dict(state["state_dict"])
        seg.normalization_ = tuple(state["normalization"])
        if state.get("clean_normalization") is not None:
            seg.clean_normalization_ = tuple(state["clean_normalization"])
        net.normalization, net.class_names = seg.normalization_, state["class_names"]
        net.source_location = location(path)  # the write guard refuses to write over it
        seg.network_, seg.mode_ = net.eval(), state["mode"]
        for name, value in state.get("fitted", {}).items():  # absent in older files
            setattr(seg, name, tuple(value) if isinstance(value, list) else value)
        return seg


_CHOSEN_IN_FIT = ("pseudo_sigma_", "steps_self_correct_", "dtype_")


def _histogram_stats(hist: Any) -> tuple[float, float]:
    """Mean and std of the voxels a histogram counted (bin centres, weighted)."""
    counts = np.asarray(hist.counts, dtype=np.float64)
    edges = np.asarray(hist.edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    total = counts.sum()
    mean = float((counts * centres).sum() / total)
    std = float(np.sqrt((counts * (centres - mean) ** 2).sum() / total))
    return mean, max(std, 1e-12)


def segment(
    vol: Any,
    n_classes: int = 3,
    *,
    labels: Any = None,
    clean: Any = None,
    model: str = "unet2d",
    context: int = 7,
    skip: bool | str = "auto",
    **options: Any,
) -> xr.DataArray:
    """Segment a volume end to end and return lazy uint8 labels.

    With no ``labels``, the unsupervised pipeline (pseudo labels → stage 2 → stage 3 →
    inference); with sparse or dense ``labels``, supervised training then inference;
    with ``clean`` (an HQ scan of the same sample), the stacked denoise+segment network.
    Training **computes** (see :meth:`Segmenter.fit`); the labels returned are lazy.

    ``options`` are further :class:`Segmenter` settings (steps, patch, depth, f0, ...).

    Examples
    --------
    >>> import xctdask as xd
    >>> ds = xd.phantoms.make("fibre-composite", (24, 64, 64), seed=0)
    >>> labels = xd.segment(ds.hq, 3, steps=20, steps_self_correct=10, patch=32,
    ...                     depth=2, f0=4, context=3, progress=False)
    >>> labels.dims
    ('z', 'y', 'x')
    """
    seg = Segmenter(n_classes, model=model, context=context, skip=skip, **options)
    result = seg.fit(vol, labels, clean).transform(vol)
    result.attrs["segmenter_history"] = json.dumps(seg.history)
    return result
