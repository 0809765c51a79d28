"""training_curves: panels follow what the histories logged; PNG written."""

from __future__ import annotations

import numpy as np
import pytest

from xctdask.selfcorrect import SelfCorrectionHistory
from xctdask.train import History
from xctdask.viz import training_curves


def _stage2() -> History:
    h = History(step=list(range(30)), loss=list(np.linspace(1, 0.1, 30)), lr=[1e-3] * 30)
    h.val_step, h.val_miou = [10, 20, 30], [0.5, 0.7, 0.8]
    return h


def test_stage2_then_stage3_on_one_step_axis(tmp_path):
    stage3 = SelfCorrectionHistory(step=list(range(20)), loss=[0.3] * 20)
    stage3.mean_confidence, stage3.masked_fraction = [0.9] * 20, [0.1] * 20
    path = tmp_path / "curves.png"
    fig = training_curves(_stage2(), stage3, labels=("stage 2", "stage 3"), path=path, smooth=5)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "training loss",
        "validation mIoU",
        "teacher: mean confidence / masked fraction",
    ]
    loss_lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(
        loss_lines[0].get_ydata(), np.convolve(np.linspace(1, 0.1, 30), np.ones(5) / 5, "valid")
    )
    assert loss_lines[1].get_xdata()[0] == 30 + 4  # stage 3 continues after stage 2
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accepts_a_trained_network_and_dicts():
    class Net:
        history = _stage2()

    assert len(training_curves(Net()).axes) == 2
    assert (
        len(training_curves({"step": [0], "loss": [1.0], "val_psnr": [20.0], "val_step": [0]}).axes)
        == 2
    )


def test_bad_input():
    with pytest.raises(TypeError, match="History"):
        training_curves([1, 2, 3])
    with pytest.raises(ValueError, match="labels"):
        training_curves(_stage2(), labels=("a", "b"))
    with pytest.raises(ValueError, match="at least one"):
        training_curves()
