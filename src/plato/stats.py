"""95% intervals for the numbers Plato reports (scipy.stats does the distributions).

    accuracy_interval(k, n)     a proportion over test examples: Wilson's score interval.
                                Each test example is a Bernoulli trial of the fitted stitch;
                                Wilson keeps its coverage near 95% close to 0 and 1 and at
                                a few hundred examples, where the normal (Wald) interval
                                does not, and needs no resampling.
    paired_interval(a, b)       the mean of a - b over the same examples (trained minus its
                                random control, both on one test set): a Student t interval
                                of the per-example differences, which keeps the pairing
                                (the two cells' errors are correlated, so unpaired intervals
                                would be too wide).
    mean_interval(values)       a mean over independent repeats (seeds): Student t.

An interval that cannot be computed is (nan, nan) with the reason from `why_not`.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95


def accuracy_interval(correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval for `correct` successes in `n` trials."""
    from scipy import stats  # (imported on use: it costs the CLI's start a second)

    if n < 1:
        return math.nan, math.nan
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(values) -> tuple[float, float]:
    """A Student t 95% interval of the mean of `values` (NaN ignored); (nan, nan) below 2."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
    if sem == 0:
        return mean, mean
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1)) * sem
    return mean - half, mean + half


def paired_interval(a, b) -> tuple[float, float]:
    """A 95% interval of mean(a - b) over paired observations (per-example outcomes)."""
    return mean_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def why_not(n: int, what: str = "examples") -> str | None:
    """Why an interval over `n` observations is NaN, or None when it is not."""
    if n < 2:
        return f"an interval needs at least 2 {what}, there {'is' if n == 1 else 'are'} {n}"
    return None
