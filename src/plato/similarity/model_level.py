"""Model-level scores: one number per pair of networks from a similarity table, for the question
researchers ask after the table — how similar are these two networks, not only which layers.

    max         the most similar cell: the best-matching pair of layers
    depth_mean  the mean over each row's cell at the same relative depth (a point's position
                among its network's cut points in the table, 0 at the first and 1 at the last:
                the diagonal of a square table): whether the networks compute alike stage by
                stage

Both are computed on the permutation null's examples, so each has
    - its null: the same score of each shuffled table (B's examples shuffled against A's, the
      shuffles of the cells' null), its p-value (1 + shuffles at least as similar) / (K + 1)
      (Phipson & Smyth 2010), and the score calibrated to 0 at the null's mean and 1 at the
      measure's identity. The null of `max` is the family's (Westfall & Young 1993): the best
      cell is compared with the best cell of each shuffle, so picking the best pair out of all
      of them is accounted for. What the null tests: dependence through the shared inputs; a
      trained network and a random one are dependent too (README, "What the null tests").
    - an interval over the examples: the delete-a-group jackknife (stats.jackknife_interval),
      the table recomputed with each of G groups of examples left out, centred on the
      jackknife's bias-corrected estimate: CKA's plug-in estimator sits above the population
      value by O(d/n) (0.01 in the coverage test, where an interval around the plain value
      covered 87% of the time in one setup; around the corrected one, 93-96% in three). The
      calibrated score's interval is the raw one mapped the same way (the null's mean taken
      as known). Where two cells nearly tie for the best, the max is not a smooth function of
      the examples and its interval is too narrow (90% where the best two population values
      differ by 0.001); its p-value stands regardless.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from plato.stats import jackknife_estimate, jackknife_interval

SCORES = ("max", "depth_mean")
SCORE_NAMES = {"max": "the most similar cell", "depth_mean": "the mean along relative depth"}
JACKKNIFE_GROUPS = 20  # groups of examples left out in turn (at least 2 examples each)


@dataclass
class ModelScore:
    score: str  # max | depth_mean
    value: float  # on the null's examples
    bias_corrected: float  # the jackknife's estimate (its interval's centre)
    low: float  # the jackknife's 95% interval over the examples
    high: float
    null_mean: float  # the same score's mean over the shuffles
    p_value: float  # (1 + shuffles at least as similar) / (permutations + 1)
    calibrated: float  # (value - null_mean) / (identity - null_mean): 0 at the null, 1 identical
    calibrated_low: float
    calibrated_high: float
    cells: int  # the cells it is taken over
    row: str | None = None  # max: the best cell's points
    column: str | None = None

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def depth_matched(rows: int, columns: int) -> list[tuple[int, int]]:
    """Each row's column at the same relative depth, i / (rows - 1) -> the nearest
    j / (columns - 1) (a single row sits at depth 0)."""
    if rows < 1 or columns < 1:
        return []
    return [(i, round(i / (rows - 1) * (columns - 1)) if rows > 1 else 0) for i in range(rows)]


def score_values(tables: np.ndarray, defined: np.ndarray, larger: bool) -> dict[str, np.ndarray]:
    """Each score of (..., N, M) tables over the cells `defined` (N, M) marks: arrays of the
    leading shape (NaN where no cell is defined)."""
    n, m = defined.shape
    flat = tables.reshape(*tables.shape[:-2], n * m)[..., defined.reshape(-1)]  # (..., cells)
    matched = [(i, j) for i, j in depth_matched(n, m) if defined[i, j]]
    nan = np.full(tables.shape[:-2], np.nan)
    best = (flat.max(-1) if larger else flat.min(-1)) if flat.shape[-1] else nan
    depth = tables[..., [i for i, _ in matched], [j for _, j in matched]].mean(-1) \
        if matched else nan
    return {"max": best, "depth_mean": depth}


def model_scores(observed: np.ndarray, nulls: np.ndarray, replicates: np.ndarray,
                 measure, rows: list[str], columns: list[str]) -> dict[str, ModelScore]:
    """The model-level scores of a table from its values on the null's examples `observed`
    (N, M; NaN where undefined), the shuffled tables `nulls` (K, N, M) and the jackknife's
    tables `replicates` (G, N, M), for `measure` (a plato.similarity Measure)."""
    larger = measure.larger_is_more_similar
    defined = np.isfinite(observed) & np.isfinite(nulls).all(0) & np.isfinite(replicates).all(0)
    value = score_values(observed, defined, larger)
    null = score_values(nulls, defined, larger)
    jack = score_values(replicates, defined, larger)
    out = {}
    for name in SCORES:
        v, shuffled = float(value[name]), null[name]
        null_mean = float(shuffled.mean()) if len(shuffled) else math.nan
        closer = (shuffled >= v) if larger else (shuffled <= v)
        p = (1 + int(closer.sum())) / (len(shuffled) + 1) if math.isfinite(v) else math.nan
        low, high = jackknife_interval(v, jack[name])
        span = measure.identity - null_mean

        def calibrate(x: float, span=span, null_mean=null_mean) -> float:
            return (x - null_mean) / span if span else math.nan

        c_low, c_high = sorted((calibrate(low), calibrate(high)))
        cells = int(defined.sum()) if name == "max" else \
            sum(bool(defined[i, j]) for i, j in depth_matched(*defined.shape))
        corrected = jackknife_estimate(v, jack[name]) if math.isfinite(v) else math.nan
        score = ModelScore(name, v, corrected, low, high, null_mean, p, calibrate(v), c_low,
                           c_high, cells)
        if name == "max" and defined.any():
            masked = np.where(defined, observed, -np.inf if larger else np.inf)
            i, j = np.unravel_index((np.argmax if larger else np.argmin)(masked), masked.shape)
            score.row, score.column = rows[i], columns[j]
        out[name] = score
    return out


def jackknife_groups(n: int, seed: int, groups: int = JACKKNIFE_GROUPS) -> list[np.ndarray]:
    """`groups` disjoint sets of the n examples' indices (a seeded shuffle dealt round-robin,
    so the groups differ by at most one example), fewer where n is small (2 examples each at
    least)."""
    g = max(2, min(groups, n // 2))
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[k::g]) for k in range(g)]
