"""xctdask: segmentation of terabyte X-ray CT volumes on Dask.

Everything is imported on first use (PEP 562, through ``lazy_loader``), so ``import
xctdask`` and ``xctdask --version`` are instant and a script pays only for what it
uses.

Examples
--------
>>> import numpy as np
>>> import xctdask as xd
>>> vol = xd.open_volume(np.zeros((4, 8, 8), np.float32))
>>> vol.dims
('z', 'y', 'x')
"""

import lazy_loader

__version__ = "0.1.0.dev0"

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[
        "augment",
        "backend",
        "cluster",
        "engine",
        "explain",
        "inference",
        "io",
        "losses",
        "metrics",
        "models",
        "phantoms",
        "presets",
        "pseudolabels",
        "regions",
        "sampling",
        "selfcorrect",
        "studies",
        "teacher",
        "viz",
    ],
    submod_attrs={
        "inference": ["predict"],
        "io": ["open_volume", "save_volume"],
        "pseudolabels": ["PseudoLabeler", "pseudo_labels"],
        "sampling": ["PatchSampler"],
        "segment": ["Segmenter", "segment"],
        "selfcorrect": ["self_correct"],
        "train": ["train"],
    },
)

__all__ = [
    "PatchSampler",
    "PseudoLabeler",
    "Segmenter",
    "__version__",
    "augment",
    "cluster",
    "engine",
    "explain",
    "inference",
    "io",
    "losses",
    "metrics",
    "models",
    "open_volume",
    "phantoms",
    "predict",
    "presets",
    "pseudo_labels",
    "pseudolabels",
    "save_volume",
    "segment",
    "self_correct",
    "studies",
    "train",
    "viz",
]
