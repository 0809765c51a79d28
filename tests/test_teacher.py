"""EMA arithmetic, confidence masking, and the masked-loss normalisation of stage 3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xctdask import losses, models
from xctdask.teacher import EMATeacher, class_thresholds, confident_labels


def test_ema_update_arithmetic_over_several_steps():
    torch.manual_seed(0)
    student = models.build("unet2d", 1, 3, depth=2, f0=4)
    teacher = EMATeacher(student, decay=0.9)
    start = [p.clone() for p in teacher.module.parameters()]
    targets = []
    for step in range(3):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.1 * (step + 1))
        targets.append([p.clone() for p in student.parameters()])
        teacher.update(student)
    for i, p in enumerate(teacher.module.parameters()):
        want = start[i]
        for t in targets:
            want = 0.9 * want + 0.1 * t[i]
        torch.testing.assert_close(p, want)
    assert not any(p.requires_grad for p in teacher.module.parameters())
    assert all(p.requires_grad for p in student.parameters())  # the student is untouched


def test_batch_norm_statistics_follow_and_counters_copy():
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    teacher = EMATeacher(student, decay=0.5)
    student.train()
    student(torch.randn(4, 1, 5, 5) * 3 + 2)
    teacher.update(student)
    bn_t, bn_s = teacher.module[1], student[1]
    torch.testing.assert_close(bn_t.running_mean, 0.5 * torch.zeros(2) + 0.5 * bn_s.running_mean)
    assert int(bn_t.num_batches_tracked) == int(bn_s.num_batches_tracked) == 1


def test_confidence_mask_and_statistics():
    probs = torch.tensor([[[0.95, 0.6, 0.2], [0.05, 0.4, 0.8]]])  # (N=1, C=2, W=3)
    out = confident_labels(torch.log(probs), threshold=0.7)
    assert out.labels.tolist() == [[0, 255, 1]]
    assert out.masked_fraction == pytest.approx(1 / 3)
    assert out.mean_confidence == pytest.approx((0.95 + 0.6 + 0.8) / 3, rel=1e-5)
    with pytest.raises(ValueError):
        confident_labels(torch.zeros(1, 2, 3), threshold=1.5)


def test_masked_loss_is_normalised_by_the_confident_voxels():
    torch.manual_seed(1)
    student_logits = torch.randn(2, 3, 4, 4)
    teacher = confident_labels(torch.randn(2, 3, 4, 4) * 3, threshold=0.8)
    n_confident = int((teacher.labels != 255).sum())
    assert 0 < n_confident < teacher.labels.numel()
    eps = 0.1
    loss = losses.CrossEntropyLoss(label_smoothing=eps)(student_logits, teacher.labels)
    logp = F.log_softmax(student_logits, dim=1)
    keep = teacher.labels != 255
    safe = teacher.labels.clamp(max=2)
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    uniform = -logp.mean(dim=1)
    per_voxel = (1 - eps) * nll + eps * uniform
    assert loss.item() == pytest.approx(per_voxel[keep].sum().item() / n_confident, rel=1e-5)


def test_teacher_labels_use_the_logits_of_a_denoise_segment_network():
    net = models.build("stacked-denseuseg", 1, 2, k0=2, growth=2, n_blocks=2, modules_per_block=1)
    teacher = EMATeacher(net)
    out = teacher.label(torch.randn(1, 1, 8, 8, 8), threshold=0.0)
    assert out.labels.shape == (1, 8, 8, 8) and out.masked_fraction == 0.0


def test_class_thresholds_keep_a_share_of_every_predicted_class():
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(1000, generator=g) * 0.5 + 0.5
    labels = torch.randint(0, 3, (1000,), generator=g)
    labels[:5] = 3  # a rare class, all below the global threshold
    confidence[:5] = torch.tensor([0.55, 0.6, 0.65, 0.7, 0.75])
    per_class = class_thresholds(confidence, labels, 5, threshold=0.9, keep=0.4)
    assert per_class[4] == pytest.approx(0.9)  # never predicted: the global threshold
    for c in range(4):
        picked = confidence[labels == c]
        kept = int((picked >= per_class[c]).sum())
        # at least 40 % kept, and never more than the global threshold would keep
        # (or the share itself, when that is larger)
        share = -(-4 * picked.numel() // 10)
        assert kept >= share
        assert kept <= max(share, int((picked >= 0.9).sum()))
    assert per_class[3] == pytest.approx(0.7)  # the top 2 of 5 are 0.7 and 0.75


def test_class_keep_lets_an_uncertain_small_class_through():
    # class 1 is predicted on 4 voxels at confidences 0.55–0.7; class 0 on 96 at 0.99
    logits = torch.zeros(1, 2, 100)
    logits[0, 0, :96] = 5.0
    logits[0, 1, 96:] = torch.tensor([0.2, 0.4, 0.6, 0.85])
    plain = confident_labels(logits, 0.9)
    assert (plain.labels == 1).sum() == 0  # the Unbiased Teacher's mask drops it
    kept = confident_labels(logits, 0.9, class_keep=0.5)
    assert (kept.labels == 1).sum() == 2  # its two most confident voxels survive
    assert (kept.labels[0, :96] == 0).all()
    with pytest.raises(ValueError, match="class_keep"):
        confident_labels(logits, 0.9, class_keep=1.5)
