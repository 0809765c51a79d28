"""Each paper's experiments as a study a user can rerun on their own scan.

A study is a thin script over the library: it takes a volume (a user's scan with true
labels, or a built-in phantom), trains small networks at a size that fits the machine,
and returns a :class:`~xctdask.studies.common.StudyResult` whose ``save(folder)``
writes the numbers as JSON, the figures as PNG and a one-screen summary. From the
command line: ``xctdask study NAME --out DIR``.

==================  =====================================================
``learning-curve``  Modular U-Net paper, Fig. 6: IoU vs annotated slices
``data-fraction``   PXCT paper, Fig. 2: U-Net vs Pix2Pix vs training data
``noise-robustness`` noise-robustness paper, Table 2 / Fig. 7
``stage2-duration`` SR-CT paper, Table IV: stopping points of stage 2
``over-classes``    SR-CT paper, Figs. 9–10: more pseudo classes than phases
``gradcam``         SR-CT paper, Fig. 11: Grad-CAM of stage 2 and stage 3
``report``          Modular U-Net paper, Table D.5, Figs. D.10, A.8
==================  =====================================================

Examples
--------
>>> from xctdask import studies
>>> sorted(studies.STUDIES)[:3]
['data-fraction', 'gradcam', 'learning-curve']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["STUDIES", "run_study"]

#: study name -> module of :mod:`xctdask.studies`
STUDIES: dict[str, str] = {
    "learning-curve": "learning_curve",
    "data-fraction": "data_fraction",
    "noise-robustness": "noise_robustness",
    "stage2-duration": "stage2_duration",
    "over-classes": "over_classes",
    "gradcam": "gradcam",
    "report": "report",
}


def run_study(name: str, **options: Any):
    """Run the study ``name`` with its ``run(**options)``; returns its StudyResult."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}")
    module = importlib.import_module(f"xctdask.studies.{STUDIES[name]}")
    return module.run(**options)
