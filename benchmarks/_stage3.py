"""Stage-3 variants shared by the quality benchmarks (``quality.py``, ``end_to_end.py``).

Stage 3 runs once per ``--class-keep`` value; each run is reported under
:func:`variant` and the goals are judged on :func:`judged_variant`, what
``xd.Segmenter`` does by default when that value was run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import xctdask as xd


def variant(keep: float) -> str:
    """The report key of the stage-3 run with ``class_keep=keep``.

    >>> variant(0), variant(0.1)
    ('stage3_unbiased_teacher', 'stage3_class_keep_0.1')
    """
    return "stage3_unbiased_teacher" if keep == 0 else f"stage3_class_keep_{keep:g}"


def judged_variant(keeps: Sequence[float]) -> str:
    """The variant the goals are judged on: the Segmenter's default if it was run,
    else the last value asked for."""
    default = variant(xd.Segmenter.class_keep)
    return default if default in map(variant, keeps) else variant(keeps[-1])


def add_class_keep_argument(parser: argparse.ArgumentParser) -> None:
    """``--class-keep V ...``, by default the paper's 0 and the Segmenter's default."""
    parser.add_argument(
        "--class-keep",
        type=float,
        nargs="+",
        default=[0.0, xd.Segmenter.class_keep],
        help="stage 3 runs once per value (default: the paper's 0 and the Segmenter's "
        "default); goals are judged on the Segmenter's default",
    )
