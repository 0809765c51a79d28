"""Segmentation and image-quality metrics, lazy on Dask input.

Examples
--------
>>> import numpy as np
>>> from xctdask import metrics
>>> float(metrics.mean_iou(np.array([0, 1, 1]), np.array([0, 1, 1]), n_classes=2))
1.0
"""

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "baselines": [
            "BaselineScores",
            "bin_zero_oc",
            "bin_zero_oc_from_histogram",
            "intensity_iou_bound",
            "intensity_iou_bound_from_histogram",
            "joint_histogram",
            "zero_oc",
            "zero_oc_from_histogram",
        ],
        "confusion": ["confusion_matrix", "contingency"],
        "filters": ["FILTERS", "FilterBaseline"],
        "forest": ["ForestBaseline"],
        "image": ["noise_level", "noise_spectrum", "psnr", "ssim"],
        "matching": ["apply_mapping", "match_labels"],
        "scores": [
            "classification_report",
            "dice",
            "iou",
            "mean_iou",
            "pixel_accuracy",
            "precision_recall_f1",
        ],
    },
)

__all__ = [
    "FILTERS",
    "BaselineScores",
    "FilterBaseline",
    "ForestBaseline",
    "apply_mapping",
    "bin_zero_oc",
    "bin_zero_oc_from_histogram",
    "classification_report",
    "confusion_matrix",
    "contingency",
    "dice",
    "intensity_iou_bound",
    "intensity_iou_bound_from_histogram",
    "iou",
    "joint_histogram",
    "match_labels",
    "mean_iou",
    "noise_level",
    "noise_spectrum",
    "pixel_accuracy",
    "precision_recall_f1",
    "psnr",
    "ssim",
    "zero_oc",
    "zero_oc_from_histogram",
]
