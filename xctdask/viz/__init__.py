"""Figures (matplotlib, PNG): training curves.

>>> import xctdask as xd
>>> fig = xd.viz.training_curves({"step": [0, 1, 2], "loss": [1.0, 0.6, 0.5]})
>>> len(fig.axes)
1
"""

from xctdask.viz.curves import training_curves

__all__ = ["training_curves"]
