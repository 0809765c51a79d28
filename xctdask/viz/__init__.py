"""Figures (matplotlib, PNG): slice montages with label overlays, the histogram with a
labeler's thresholds, training curves, confusion matrices. Each returns a Figure and
writes a PNG when given ``path``.

>>> import xctdask as xd
>>> fig = xd.viz.training_curves({"step": [0, 1, 2], "loss": [1.0, 0.6, 0.5]})
>>> len(fig.axes)
1
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "confusion": ["confusion"],
        "curves": ["training_curves"],
        "histogram": ["histogram"],
        "montage": ["montage"],
    },
)

__all__ = ["confusion", "histogram", "montage", "training_curves"]
