"""The mergers' finalisation: arg-max with ties, non-finite voxels, scale-free labels."""

from __future__ import annotations

import math

import pytest
import torch

from xctdask.backend import UNLABELLED
from xctdask.inference.mergers import MERGERS, _first_max


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_first_max_is_argmax_with_ties_to_the_first_class(classes):
    g = torch.Generator().manual_seed(classes)
    mean = torch.randint(0, 4, (classes, 3, 40, 50), generator=g).float()  # many ties
    index, best = _first_max(mean)
    assert index.dtype == torch.uint8
    assert torch.equal(index.long(), mean.argmax(0))
    assert torch.equal(best, mean.amax(0))


def test_labels_do_not_depend_on_a_positive_factor_per_voxel():
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(3, 4, 30, 30, generator=g)
    scale = torch.rand(4, 30, 30, generator=g) + 0.1
    labels = MERGERS["labels"]
    assert labels.scale_free
    assert torch.equal(labels.finalize(mean, None), labels.finalize(mean * scale, None))
    assert not MERGERS["probabilities"].scale_free


def test_non_finite_voxels_are_marked():
    mean = torch.full((2, 1, 2, 2), 0.5)
    mean[1] = 0.7
    bad = torch.zeros(1, 2, 2, dtype=torch.bool)
    bad[0, 1, 1] = True
    labels = MERGERS["labels"].finalize(mean, bad)
    assert labels[0, 1, 1] == UNLABELLED and (labels[~bad] == 1).all()
    confidence = MERGERS["confidence"].finalize(mean, bad)
    assert math.isnan(confidence[0, 1, 1]) and confidence[0, 0, 0] == pytest.approx(0.7)
    assert not torch.isnan(MERGERS["entropy"].finalize(mean, None)).any()
