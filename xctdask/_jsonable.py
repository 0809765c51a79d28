"""Strict JSON for what xctdask writes and prints (reports, study results).

Python's ``json`` writes NaN and ±inf as ``NaN`` / ``-Infinity``, which are not JSON:
jq, JavaScript and most other parsers refuse the file. Here they become ``null``, and
NumPy scalars and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "plain"]


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python numbers and lists, dict keys
    as strings, and NaN / ±inf as None.

    Examples
    --------
    >>> plain({"iou": np.array([0.5, np.nan]), 1: -np.inf})
    {'iou': [0.5, None], '1': None}
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (through :func:`plain`).

    Examples
    --------
    >>> dumps({"best": -float("inf")}, indent=None)
    '{"best": null}'
    """
    return json.dumps(plain(value), indent=indent, allow_nan=False)
