"""Synthetic SR-CT phantoms with exact ground truth, and reconstruction of real scans.

Examples
--------
>>> from xctdask import phantoms
>>> ds = phantoms.make("corrosion", shape=(2, 32, 32), seed=0)
>>> ds.attrs["class_names"]
['air', 'metal', 'deposit', 'air pocket']
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "ct": ["ScanSettings", "reconstruct"],
        "geometry": ["KINDS"],
        "make": ["make"],
    },
)

__all__ = ["KINDS", "ScanSettings", "make", "reconstruct"]
