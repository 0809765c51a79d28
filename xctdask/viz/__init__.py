"""Figures (matplotlib, PNG): slice montages with label overlays, the histogram with a
labeler's thresholds, training curves, confusion matrices. Each returns a Figure and
writes a PNG when given ``path``.

>>> import xctdask as xd
>>> fig = xd.viz.training_curves({"step": [0, 1, 2], "loss": [1.0, 0.6, 0.5]})
>>> len(fig.axes)
1
"""

from xctdask.viz.confusion import confusion
from xctdask.viz.curves import training_curves
from xctdask.viz.histogram import histogram
from xctdask.viz.montage import montage

__all__ = ["confusion", "histogram", "montage", "training_curves"]
