"""Reading and writing CT volumes: Zarr (v2, v3, OME-Zarr), TIFF, raw + .raw.info, HDF5.

Examples
--------
>>> import numpy as np
>>> from xctdask.io import open_volume
>>> open_volume(np.zeros((2, 3, 4))).dims
('z', 'y', 'x')
"""

from xctdask.io.open import as_volume, open_volume
from xctdask.io.projections import open_projections
from xctdask.io.rawinfo import read_raw_info, write_raw
from xctdask.io.save import SaveResult, is_interrupted_write, save_volume
from xctdask.io.verify import StoreCheck, check_store

__all__ = [
    "SaveResult",
    "StoreCheck",
    "as_volume",
    "check_store",
    "is_interrupted_write",
    "open_projections",
    "open_volume",
    "read_raw_info",
    "save_volume",
    "write_raw",
]
