"""Synthetic SR-CT phantoms with exact ground truth, and reconstruction of real scans.

Examples
--------
>>> from xctdask import phantoms
>>> ds = phantoms.make("corrosion", shape=(2, 32, 32), seed=0)
>>> ds.attrs["class_names"]
['air', 'metal', 'deposit', 'air pocket']
"""

from xctdask.phantoms.ct import ScanSettings, reconstruct
from xctdask.phantoms.make import KINDS, make

__all__ = ["KINDS", "ScanSettings", "make", "reconstruct"]
