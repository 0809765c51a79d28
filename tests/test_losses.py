"""Each loss against a small example computed by hand; the ignore index everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xctdask import losses

SEGMENTATION = [
    losses.CrossEntropyLoss,
    losses.FocalLoss,
    losses.TopKCrossEntropy,
    losses.BootstrappingLoss,
    losses.GeneralizedCrossEntropy,
    losses.SymmetricCrossEntropy,
    losses.DiceLoss,
    losses.Jaccard2Loss,
]


def test_class_weights_by_hand():
    # P/S = 90, 10, 40 → median 40 → W = 40/90, 4, 1
    w = losses.class_weights([900, 50, 200], [10, 5, 5])
    torch.testing.assert_close(w, torch.tensor([40 / 90, 4.0, 1.0]))
    assert losses.class_weights([10, 0], [1, 0]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        losses.class_weights([1, 2], [1])


def test_cross_entropy_weights_and_smoothing_by_hand():
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # N=1, C=2, W=2
    target = torch.tensor([[0, 1]])
    lse0, lse1 = math.log(math.e + 1), math.log(1 + math.e**2)
    ce = [lse0 - 1.0, lse1 - 2.0]
    loss = losses.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))(logits, target)
    assert loss.item() == pytest.approx((ce[0] + 3 * ce[1]) / 4, rel=1e-6)
    # smoothing ε: target distribution (1 - ε) one-hot + ε / C
    eps = 0.2
    smooth = losses.CrossEntropyLoss(label_smoothing=eps)(logits, target)
    nll_other = [lse0 - 0.0, lse1 - 0.0]
    want = sum((1 - eps / 2) * c + eps / 2 * o for c, o in zip(ce, nll_other, strict=True)) / 2
    assert smooth.item() == pytest.approx(want, rel=1e-6)


def test_focal_by_hand():
    logits = torch.tensor([[[math.log(3.0)], [0.0]]])  # p(class 0) = 0.75
    loss = losses.FocalLoss(gamma=2)(logits, torch.tensor([[0]]))
    assert loss.item() == pytest.approx(-(0.25**2) * math.log(0.75), rel=1e-6)
    plain = losses.FocalLoss(gamma=0)(logits, torch.tensor([[0]]))
    assert plain.item() == pytest.approx(-math.log(0.75), rel=1e-6)


def test_top_k_keeps_the_hardest():
    logits = torch.tensor([[[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]]])
    target = torch.tensor([[0, 0, 1, 0]])
    ce = F.cross_entropy(logits, target, reduction="none")[0]
    top = sorted(ce.tolist(), reverse=True)
    loss = losses.TopKCrossEntropy(top_k=0.5)(logits, target)
    assert loss.item() == pytest.approx(sum(top[:2]) / 2, rel=1e-6)
    assert losses.TopKCrossEntropy(top_k=1.0)(logits, target).item() == pytest.approx(
        ce.mean().item(), rel=1e-6
    )


def test_bootstrapping_is_reed_et_al():
    # two voxels, three classes: targets mix the label with the model's belief p
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [-1.0, 0.5]]])  # (1, 3, 2)
    target = torch.tensor([[1, 0]])
    p = F.softmax(logits, 1)[0].T  # (voxel, class)
    y = F.one_hot(target[0], 3).float()
    for mode, beta in (("soft", 0.95), ("hard", 0.8)):
        belief = p if mode == "soft" else F.one_hot(p.argmax(1), 3).float()
        t = beta * y + (1 - beta) * belief
        want = -(t * p.log()).sum(1).mean()
        got = losses.BootstrappingLoss(beta=beta, mode=mode)(logits, target)
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert isinstance(losses.build_loss("bootstrap"), losses.BootstrappingLoss)
    assert isinstance(losses.build_loss("topk_ce"), losses.TopKCrossEntropy)


def test_generalized_and_symmetric_cross_entropy_by_hand():
    logits = torch.tensor([[[math.log(3.0)], [0.0]]])  # p(class 0) = 0.75
    target = torch.tensor([[0]])
    gce = losses.GeneralizedCrossEntropy(q=0.7)(logits, target)
    assert gce.item() == pytest.approx((1 - 0.75**0.7) / 0.7, rel=1e-6)
    # q → 0 is the cross entropy
    near_ce = losses.GeneralizedCrossEntropy(q=1e-4)(logits, target)
    assert near_ce.item() == pytest.approx(-math.log(0.75), rel=1e-3)
    sce = losses.SymmetricCrossEntropy(alpha=0.1, beta=1.0)(logits, target)
    # RCE = -Σ p_c log y_c with log 0 = -4: only the wrong class (p = 0.25) counts
    assert sce.item() == pytest.approx(0.1 * -math.log(0.75) + 4 * 0.25, rel=1e-6)


def test_dice_and_jaccard2_by_hand():
    # probabilities of class 1 are 0.8 and 0.3; target [1, 0]
    p1 = torch.tensor([0.8, 0.3])
    logits = torch.stack([torch.zeros(2), torch.log(p1 / (1 - p1))])[None]  # (1, 2, 2)
    target = torch.tensor([[1, 0]])
    p = torch.stack([1 - p1, p1])
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    inter = (p * y).sum(1)
    dice = 2 * inter / (p.sum(1) + y.sum(1))
    assert losses.DiceLoss()(logits, target).item() == pytest.approx(1 - dice.mean().item(), 1e-5)
    # Eq. C.2: one ratio, sums over voxels and classes inside it
    jac = (p * y).sum() / ((p * p).sum() + (y * y).sum() - (p * y).sum())
    assert losses.Jaccard2Loss()(logits, target).item() == pytest.approx(1 - jac.item(), 1e-5)


def test_jaccard2_barely_notices_a_model_that_ignores_a_rare_class():
    # 0.5 % of the voxels are class 2 and the model never predicts it: the paper's single
    # ratio hardly moves (a per-class mean would charge a whole third of the loss)
    target = torch.zeros(1, 1000, dtype=torch.long)
    target[0, :5] = 2
    logits = torch.full((1, 3, 1000), -20.0)
    logits[:, 0] = 20.0
    loss = losses.Jaccard2Loss()(logits, target).item()
    assert loss == pytest.approx(1 - 995 / 1005, abs=1e-4)  # ≈ 0.01, not ≈ 0.33


@pytest.mark.parametrize("loss_class", SEGMENTATION)
def test_ignored_voxels_change_nothing(loss_class):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 6))
    target[:, :2] = 255
    loss = loss_class()(logits, target)
    loss.backward()
    assert torch.all(logits.grad[:, :, :2] == 0)  # unlabelled voxels get no gradient
    # whatever the logits say there, the loss is the same
    other = logits.detach().clone()
    other[:, :, :2] = torch.randn(2, 3, 2, 6) * 10
    assert loss_class()(other, target).item() == pytest.approx(loss.item(), rel=1e-6)
    # and equals the loss on the labelled part alone
    alone = loss_class()(logits.detach()[:, :, 2:], target[:, 2:])
    assert alone.item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("loss_class", SEGMENTATION)
def test_all_unlabelled_is_zero_not_nan(loss_class):
    logits = torch.randn(1, 2, 3, requires_grad=True)
    loss = loss_class()(logits, torch.full((1, 3), 255))
    assert loss.item() == 0.0
    loss.backward()


def test_denoise_segment_combines_ce_and_ten_mse():
    torch.manual_seed(1)
    logits, labels = torch.randn(1, 2, 4, 4), torch.randint(0, 2, (1, 4, 4))
    denoised, clean = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)
    loss = losses.DenoiseSegmentLoss()((denoised, logits), (clean, labels))
    ce = F.cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(ce.item() + 10 * 0.25, rel=1e-6)
    assert losses.DenoiseSegmentLoss().weight == 10.0


def test_denoising_losses_skip_the_clean_scans_nan_voxels():
    denoised = torch.tensor([[[[1.0, 2.0], [3.0, 100.0]]]], requires_grad=True)
    clean = torch.tensor([[[[0.0, 2.0], [1.0, float("nan")]]]])
    loss = losses.DenoiseLoss()(denoised, clean)
    assert loss.item() == pytest.approx((1 + 0 + 4) / 3)  # the NaN voxel is not counted
    loss.backward()
    assert torch.isfinite(denoised.grad).all() and denoised.grad[0, 0, 1, 1] == 0
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    both = losses.DenoiseSegmentLoss()((denoised, torch.zeros(1, 2, 2, 2)), (clean, labels))
    assert both.item() == pytest.approx(np.log(2) + 10 * 5 / 3, rel=1e-6)


def test_pix2pix_generator_and_discriminator_by_hand():
    loss = losses.Pix2PixLoss(l1_weight=100)
    scores = torch.zeros(1, 1, 2, 2)  # sigmoid 0.5: BCE = ln 2 either way
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 for both classes
    target = torch.tensor([[[0, 255]]])
    # L1 on the labelled voxel: |0.5 - 1| + |0.5 - 0| over 2 classes = 0.5
    assert loss.generator(scores, logits, target).item() == pytest.approx(
        math.log(2) + 100 * 0.5, rel=1e-6
    )
    assert loss.discriminator(scores, scores).item() == pytest.approx(math.log(2), rel=1e-6)


def test_build_loss_and_shape_errors():
    assert isinstance(losses.build_loss("jaccard2"), losses.Jaccard2Loss)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.build_loss("hinge")
    with pytest.raises(ValueError, match="disagree"):
        losses.DiceLoss()(torch.zeros(1, 2, 3), torch.zeros(1, 4, dtype=torch.long))
