"""Intervals to labels: dtype-exact comparisons and lookup tables."""

from __future__ import annotations

import numpy as np
import pytest

from xctdask.pseudolabels import IntervalRule


def test_float32_comparison_is_exact_at_the_breakpoint():
    t = 0.1  # not a float32 number
    rule = IntervalRule([t], [0, 1])
    below = np.float32(t)
    below = below if float(below) <= t else np.nextafter(below, np.float32(-1))
    above = np.nextafter(below, np.float32(1))
    x = np.array([below, above], np.float32)
    assert rule.apply(x).tolist() == [0, 1]
    assert float(below) <= t < float(above)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, bool])
def test_lookup_table_agrees_with_searchsorted(dtype):
    rng = np.random.default_rng(0)
    rule = IntervalRule([-5.5, 0.0, 1.0, 300.2], [2, 0, 1, 2, 3])
    if dtype is bool:
        x = rng.integers(0, 2, 200).astype(bool)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, int(info.max) + 1, 5000).astype(dtype)
    want = rule.labels[np.searchsorted(rule.breakpoints, x.astype(np.float64), side="left")]
    np.testing.assert_array_equal(rule.apply(x), want)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int32, np.uint32, np.int64]
)
def test_comparisons_agree_with_searchsorted(dtype):
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 200, 20000)).astype(dtype)
    rule = IntervalRule([-100.25, 3.7, 150.0], [1, 0, 2, 1])
    want = rule.labels[np.searchsorted(rule.breakpoints, x.astype(np.float64), side="left")]
    np.testing.assert_array_equal(rule.apply(x), want)


def test_mask_and_nonfinite_get_the_fill_value():
    rule = IntervalRule([0.5], [0, 1], fill_value=255)
    x = np.array([0.0, 1.0, np.nan, -np.inf, 1.0])
    mask = np.array([True, True, True, True, False])
    assert rule.apply(x, mask).tolist() == [0, 1, 255, 255, 255]


def test_rule_validation():
    with pytest.raises(ValueError, match="one label per interval"):
        IntervalRule([1.0], [0])
    with pytest.raises(ValueError, match="increase"):
        IntervalRule([2.0, 1.0], [0, 1, 2])


def test_a_class_owning_two_intervals_and_chunks_inside_one_interval():
    rule = IntervalRule([-6.0, -2.5, 0.5, 1.5], [2, 1, 0, 1, 2])
    rng = np.random.default_rng(3)
    for lo, hi in [(-10, 10), (0.6, 1.4), (-9, -7), (2, 3), (-3, 0)]:
        x = rng.uniform(lo, hi, (3, 50, 70)).astype(np.float32)
        want = rule.labels[np.searchsorted(rule.breakpoints, x.astype(np.float64), side="left")]
        np.testing.assert_array_equal(rule.apply(x), want)
