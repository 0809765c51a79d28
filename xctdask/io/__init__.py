"""Reading and writing CT volumes: Zarr (v2, v3, OME-Zarr), TIFF, raw + .raw.info, HDF5.

Examples
--------
>>> import numpy as np
>>> from xctdask.io import open_volume
>>> open_volume(np.zeros((2, 3, 4))).dims
('z', 'y', 'x')
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "open": ["as_volume", "open_volume"],
        "projections": ["open_projections"],
        "rawinfo": ["read_raw_info", "write_raw"],
        "save": ["SaveResult", "check_store_path", "is_interrupted_write", "save_volume"],
        "verify": ["StoreCheck", "check_store"],
    },
)

__all__ = [
    "SaveResult",
    "StoreCheck",
    "as_volume",
    "check_store",
    "check_store_path",
    "is_interrupted_write",
    "open_projections",
    "open_volume",
    "read_raw_info",
    "save_volume",
    "write_raw",
]
