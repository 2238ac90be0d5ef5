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
    jackknife_interval(e, r)    a statistic of the examples that is not a mean (CKA, the best
                                cell of a table): the delete-a-group jackknife (Quenouille
                                1949, Tukey 1958; groups: Kott, J. Official Statistics 2001;
                                Efron & Tibshirani, An Introduction to the Bootstrap, 1993,
                                ch. 11), the statistic recomputed with each of G groups of
                                examples left out, Var = (G-1)/G sum (r_g - mean r)^2, and a
                                Student t with G-1 degrees of freedom. Not a bootstrap: a
                                resample with replacement duplicates examples, and duplicates
                                make two representations look more alike (CKA of a bootstrap
                                resample is biased upward); the jackknife only removes them.
    crossed_interval(y)         the mean of an S x n array (seeds_examples_interval: any S,
                                one seed a t over the examples): S stitch seeds, each measured
                                on the same n test examples. Both are samples (of the seeds a
                                fit could take, of the examples a test set could hold), and
                                they are crossed: an easy example is easy for every seed, so
                                the seeds' means share the examples' noise, and a t interval
                                over the seed means alone shrinks to zero width when the seeds
                                agree. The variance of the grand mean of a two-way crossed
                                random-effects layout, from its ANOVA mean squares:
                                Var = sigma_S^2/S + sigma_I^2/n + sigma_E^2/(S n) =
                                (MS_S + MS_I - MS_E)/(S n) (unbiased; e.g. Searle, Casella &
                                McCulloch, Variance Components, 1992, ch. 4; the design
                                Owen's pigeonhole bootstrap resamples, Ann. Appl. Stat. 2007),
                                never below the examples' part MS_I/(S n) (the seeds can only
                                add variance), with Satterthwaite's (1946) degrees of freedom.
                                Coverage is checked by simulation (tests/test_stats.py):
                                0.95 at 1, 2 and 5 seeds when the seeds spread as stitch seeds
                                do; two seeds that disagree far beyond the examples' noise
                                leave the seed part one degree of freedom and undercover.

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


def crossed_variance(y) -> tuple[float, float, float]:
    """(mean, variance of the mean, degrees of freedom) of an S x n array, S >= 2 rows (seeds)
    crossed with n >= 2 columns (test examples): see the module's text."""
    y = np.asarray(y, dtype=float)
    s, n = y.shape
    mean = float(y.mean())
    rows, cols = y.mean(1), y.mean(0)
    ms_s = n * float(((rows - mean) ** 2).sum()) / (s - 1)
    ms_i = s * float(((cols - mean) ** 2).sum()) / (n - 1)
    residual = y - rows[:, None] - cols[None, :] + mean
    ms_e = float((residual ** 2).sum()) / ((s - 1) * (n - 1))
    parts = [(ms_s / (s * n), s - 1), (ms_i / (s * n), n - 1), (-ms_e / (s * n), (s - 1) * (n - 1))]
    variance = sum(v for v, _ in parts)
    if variance <= ms_i / (s * n):  # the seeds' part estimated at or below zero
        return mean, ms_i / (s * n), float(n - 1)
    df = variance ** 2 / sum(v * v / d for v, d in parts)  # Satterthwaite (1946)
    return mean, variance, float(df)


def crossed_interval(y) -> tuple[float, float]:
    """A 95% interval of the mean of an S x n array of seeds x test examples (crossed_variance);
    where outcomes (0 or 1) do not vary at all, Wilson's interval over the n examples, so an
    accuracy's interval is never of zero width."""
    from scipy import stats

    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        return math.nan, math.nan
    mean, variance, df = crossed_variance(y)
    if variance == 0 and bool(np.isin(y, (0.0, 1.0)).all()):  # outcomes, every one alike
        return accuracy_interval(round(mean * y.shape[1]), y.shape[1])
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * math.sqrt(variance)
    return mean - half, mean + half


def jackknife_interval(estimate: float, replicates) -> tuple[float, float]:
    """A 95% interval from the delete-a-group jackknife `replicates` of `estimate` (the
    statistic recomputed with each of G equal groups of examples left out; see the module's
    text), centred on the bias-corrected estimate (jackknife_estimate); (nan, nan) with fewer
    than 2 replicates."""
    from scipy import stats

    r = np.asarray(replicates, dtype=float)
    if not math.isfinite(estimate) or len(r) < 2 or not np.isfinite(r).all():
        return math.nan, math.nan
    g = len(r)
    se = math.sqrt((g - 1) / g * float(((r - r.mean()) ** 2).sum()))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, g - 1)) * se
    centre = jackknife_estimate(estimate, r)
    return centre - half, centre + half


def jackknife_estimate(estimate: float, replicates) -> float:
    """The jackknife's bias-corrected estimate G * estimate - (G - 1) * mean(replicates): it
    removes a bias of order 1/n (Quenouille 1956), as that of CKA's plug-in estimator, which
    is above the population value by O(d/n) for unrelated layers."""
    r = np.asarray(replicates, dtype=float)
    g = len(r)
    return float(g * estimate - (g - 1) * r.mean()) if g >= 2 else math.nan


def seeds_examples_interval(y) -> tuple[float, float]:
    """A 95% interval of the mean of a (seeds, examples) array of per-example values (outcomes
    or paired differences): crossed_interval with two seeds or more, a Student t over the
    examples with one."""
    y = np.asarray(y, dtype=float)
    return crossed_interval(y) if len(y) >= 2 else mean_interval(y[0])


def paired_interval(a, b) -> tuple[float, float]:
    """A 95% interval of mean(a - b) over paired observations (per-example outcomes)."""
    return mean_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def why_not(n: int, what: str = "examples") -> str | None:
    """Why an interval over `n` observations is NaN, or None when it is not."""
    if n < 2:
        return f"an interval needs at least 2 {what}, there {'is' if n == 1 else 'are'} {n}"
    return None
