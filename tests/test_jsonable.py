"""Strict JSON: what the CLI prints and the studies and demo write."""

from __future__ import annotations

import json
import math

import numpy as np

from xctdask._jsonable import dumps, plain


def _not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON: strict parsers refuse it")


def test_non_finite_numbers_become_null_and_numpy_becomes_plain():
    report = {
        "best_validation_miou": -math.inf,
        "iou": np.array([0.5, np.nan], np.float32),
        "voxels": np.int64(7),
        2: (np.float64(np.inf), 1.5),
    }
    text = dumps(report)
    assert json.loads(text, parse_constant=_not_json) == {
        "best_validation_miou": None,
        "iou": [0.5, None],
        "voxels": 7,
        "2": [None, 1.5],
    }
    assert plain("text") == "text" and plain(None) is None
