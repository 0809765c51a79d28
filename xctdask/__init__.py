"""xctdask: segmentation of terabyte X-ray CT volumes on Dask.

Examples
--------
>>> import numpy as np
>>> import xctdask as xd
>>> vol = xd.open_volume(np.zeros((4, 8, 8), np.float32))
>>> vol.dims
('z', 'y', 'x')
"""

__version__ = "0.1.0.dev0"

from xctdask import (
    augment,
    cluster,
    inference,
    io,
    losses,
    metrics,
    models,
    phantoms,
    pseudolabels,
    viz,
)
from xctdask.inference import predict
from xctdask.io import open_volume, save_volume
from xctdask.pseudolabels import PseudoLabeler, pseudo_labels
from xctdask.sampling import PatchSampler
from xctdask.segment import Segmenter, segment
from xctdask.selfcorrect import self_correct
from xctdask.train import train

__all__ = [
    "PatchSampler",
    "PseudoLabeler",
    "Segmenter",
    "__version__",
    "augment",
    "cluster",
    "inference",
    "io",
    "losses",
    "metrics",
    "models",
    "open_volume",
    "phantoms",
    "predict",
    "pseudo_labels",
    "pseudolabels",
    "save_volume",
    "segment",
    "self_correct",
    "train",
    "viz",
]
