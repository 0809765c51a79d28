"""Stage 3: the Unbiased-Teacher loop runs without label supervision and logs what it masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xctdask as xd
from xctdask.engine import evaluate
from xctdask.sampling import PatchSampler
from xctdask.selfcorrect import self_correct, steps_for_volume
from xctdask.train import train


@pytest.fixture(scope="module")
def setup():
    ds = xd.phantoms.make("fibre-composite", (40, 96, 96), seed=2)
    lq = ds.lq.values
    norm = (float(lq.mean()), float(lq.std()))
    pseudo = xd.pseudo_labels(lq, 3, mask=None)
    common = dict(patch=(1, 48, 48), margin=2, split=(0.6, 0.2, 0.2), normalize=norm, seed=0)
    return {
        "pseudo": PatchSampler(lq, pseudo, **common),
        "truth": PatchSampler(lq, ds.labels.values, **common),
        "unlabelled": PatchSampler(lq, **common),
    }


def test_self_correction_needs_no_labels_and_logs_confidence(setup):
    torch.manual_seed(0)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=8, skip=False)
    net = train(net, setup["pseudo"], steps=60, lr=3e-3, val_every=60, batch_size=4, progress=False)
    start = [p.clone() for p in net.parameters()]
    teacher = self_correct(
        net,
        setup["unlabelled"],
        steps=30,
        batch_size=4,
        threshold=0.7,
        ema=0.9,
        lr=1e-3,
        validation=setup["truth"],
        val_every=15,
        progress=False,
    )
    h = teacher.history
    assert len(h.loss) == 30 and np.isfinite(h.loss).all()
    assert all(0 <= f <= 1 for f in h.masked_fraction)
    assert all(1 / 3 <= c <= 1 for c in h.mean_confidence)
    assert h.val_step == [15, 30] and all(0 <= m <= 1 for m in h.val_miou)
    # the teacher moved from the stage-2 weights, and is not the student
    moved = any(not torch.equal(a, b) for a, b in zip(start, teacher.parameters(), strict=True))
    assert moved and teacher is not net
    assert not any(p.requires_grad for p in teacher.parameters())


def test_threshold_one_masks_everything_and_nothing_is_learned(setup):
    torch.manual_seed(1)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    before = [p.clone() for p in net.parameters()]
    teacher = self_correct(  # the Unbiased Teacher's own mask: no class-wise share kept
        net, setup["unlabelled"], steps=3, threshold=1.0, class_keep=0.0, progress=False
    )
    assert teacher.history.masked_fraction == [1.0, 1.0, 1.0]
    assert teacher.history.loss == [0.0, 0.0, 0.0]
    # no gradient reached the student: only weight decay touched it
    for a, b in zip(before, net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-3)


def test_bad_parameters(setup):
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    with pytest.raises(ValueError, match="threshold"):
        self_correct(net, setup["unlabelled"], steps=1, threshold=2.0, progress=False)
    with pytest.raises(ValueError, match="steps"):
        self_correct(net, setup["unlabelled"], steps=0, progress=False)


def test_runs_without_a_validation_slab(setup):
    sampler = setup["truth"]
    whole = PatchSampler(
        sampler.image,
        sampler.target,
        patch=(1, 48, 48),
        margin=2,
        split=(1.0, 0.0, 0.0),
        normalize=sampler.normalize,
        seed=0,
    )
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    teacher = self_correct(net, whole, steps=4, batch_size=2, val_every=2, progress=False)
    assert teacher.history.val_step == [] and len(teacher.history.loss) == 4


class Interrupted(Exception):
    pass


class StopsAfter:
    """A sampler that dies after ``n`` training batches (a killed job)."""

    def __init__(self, sampler, n):
        self._sampler, self._n = sampler, n

    def __getattr__(self, name):
        return getattr(self._sampler, name)

    def batches(self, part, *args, **kwargs):
        for i, batch in enumerate(self._sampler.batches(part, *args, **kwargs)):
            if part == "train" and i == self._n:
                raise Interrupted
            yield batch


def test_self_correct_resumes_exactly_after_an_interruption(setup, tmp_path):
    def student():
        torch.manual_seed(0)
        return xd.models.build("unet2d", 1, 3, depth=2, f0=4, dropout=0.2)

    options = dict(
        steps=16,
        threshold=0.6,
        ema=0.9,
        lr=1e-3,
        batch_size=2,
        val_every=5,
        val_batches=1,
        validation=setup["truth"],
        progress=False,
        seed=4,
    )
    straight = self_correct(student(), setup["unlabelled"], checkpoint=tmp_path / "a", **options)
    with pytest.raises(Interrupted):  # killed after 12 steps: the last checkpoint is step 10
        self_correct(
            student(), StopsAfter(setup["unlabelled"], 12), checkpoint=tmp_path / "b", **options
        )
    resumed = self_correct(
        student(), setup["unlabelled"], checkpoint=tmp_path / "b", resume=True, **options
    )
    a, b = straight.history, resumed.history
    assert b.step == a.step == list(range(16))
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.mean_confidence, a.mean_confidence, rtol=1e-5)
    np.testing.assert_allclose(b.val_miou, a.val_miou, rtol=1e-5)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_class_keep_teaches_every_predicted_class_even_at_threshold_one(setup):
    torch.manual_seed(1)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=4)
    teacher = self_correct(
        net, setup["unlabelled"], steps=2, threshold=1.0, class_keep=0.5, progress=False
    )
    # each predicted class keeps (at least) its most confident half: about half is masked
    assert all(0.3 <= f <= 0.5 for f in teacher.history.masked_fraction)
    assert all(loss > 0 for loss in teacher.history.loss)


def test_annotations_teach_the_student_next_to_the_teacher(setup):
    """The labelled + unlabelled form: with every teacher label masked (threshold 1),
    the annotations alone still teach, and the teacher follows; their class weights
    are counted on the annotated patches."""
    torch.manual_seed(3)
    net = xd.models.build("unet2d", 1, 3, depth=2, f0=8)
    truth = setup["truth"]
    start = evaluate(net, truth.validation_batches(8, 4), 3, torch.device("cpu"))
    teacher = self_correct(
        net,
        setup["unlabelled"],
        labelled=truth,
        class_weights=True,
        steps=15,
        threshold=1.0,
        ema=0.5,
        lr=1e-2,
        batch_size=4,
        validation=truth,
        val_every=15,
        progress=False,
    )
    h = teacher.history
    assert h.masked_fraction == [1.0] * 15 and min(h.loss) > 0  # the annotations' term
    assert len(h.class_weights) == 3
    assert h.val_miou[-1] > start["miou"] + 0.2
    with pytest.raises(ValueError, match="labelled"):
        self_correct(net, setup["unlabelled"], labelled=setup["unlabelled"], steps=1)
    with pytest.raises(ValueError, match="unsupervised_weight"):
        self_correct(net, setup["unlabelled"], labelled=truth, unsupervised_weight=-1, steps=1)


def test_steps_for_volume_are_passes_over_the_volume_within_bounds():
    # 96x256x256 at patch 128, batch 8: 48 steps a pass
    assert steps_for_volume((96, 256, 256), (1, 128, 128), 8) == 192
    assert steps_for_volume((96, 256, 256), (1, 128, 128), 8, passes=2, bounds=(1, 900)) == 96
    assert steps_for_volume((96, 256, 256), (1, 128, 128), 8, bounds=(10, 100)) == 100
    assert steps_for_volume((4, 32, 32), (1, 32, 32), 8) == 150  # the lower bound
    assert steps_for_volume((2048, 2048, 2048), (1, 128, 128), 8) == 900  # the upper
    # a 3-D patch counts all of its voxels
    assert steps_for_volume((96, 256, 256), (32, 64, 64), 4, bounds=(1, 10**6)) == 48
    with pytest.raises(ValueError, match="hold voxels"):
        steps_for_volume((96, 256, 256), (0, 128, 128), 8)
