"""The intervals against their textbook formulas, and the pairing doing its job."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from plato.stats import accuracy_interval, mean_interval, paired_interval, why_not


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (287, 360), (9123, 10000)])
def test_accuracy_interval_is_wilsons(k, n):
    z = scipy_stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = accuracy_interval(k, n)
    assert low == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert high == pytest.approx(min(1.0, centre + half), abs=1e-12)
    assert low <= p <= high and 0 <= low and high <= 1
    assert all(math.isnan(v) for v in accuracy_interval(0, 0))


def test_mean_interval_is_students():
    values = [0.81, 0.84, 0.79, 0.86]
    low, high = mean_interval(values + [float("nan")])  # NaN ignored
    expected = scipy_stats.t.interval(0.95, 3, loc=np.mean(values),
                                      scale=scipy_stats.sem(values))
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert all(math.isnan(v) for v in mean_interval([0.5]))
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5)
    assert why_not(1) and why_not(2) is None


def test_the_pairing_narrows_the_interval_of_a_difference():
    """Two cells right and wrong on mostly the same examples: the paired interval of their
    difference is far narrower than one that ignores the pairing, and contains the truth."""
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.8
    b = a.copy()
    flip = rng.random(2000) < 0.05  # b differs from a on 5% of the examples
    b[flip] = ~b[flip]
    low, high = paired_interval(a, b)
    assert low <= a.mean() - b.mean() <= high
    unpaired = 1.96 * math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert (high - low) / 2 < unpaired / 2
    assert paired_interval(a, a) == (0.0, 0.0)
