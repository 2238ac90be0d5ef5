"""Model-level scores (plato.similarity.model_level): against direct loops, the jackknife
against a direct leave-groups-out recomputation, and coverage of their intervals where the
truth is known (population linear CKA of Gaussian layers)."""

import math

import numpy as np
import pytest
import torch

from plato.similarity import MEASURES, SimilarityConfig, similarity_table
from plato.similarity.model_level import depth_matched, jackknife_groups, model_scores
from plato.stats import jackknife_interval


def test_depth_matching_is_the_diagonal_of_a_square_table_and_keeps_the_ends():
    assert depth_matched(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    matched = depth_matched(6, 13)
    assert matched[0] == (0, 0) and matched[-1] == (5, 12)  # first to first, last to last
    assert [j for _, j in matched] == [round(i * 12 / 5) for i in range(6)]
    assert depth_matched(1, 5) == [(0, 0)]


def test_scores_against_direct_loops():
    rng = np.random.default_rng(0)
    k, g, rows, cols = 29, 10, 3, 5
    observed = rng.random((rows, cols)) * 0.5
    observed[1, 2] = 0.9
    nulls = rng.random((k, rows, cols)) * 0.5
    replicates = observed + rng.normal(scale=0.01, size=(g, rows, cols))
    observed[2, 4] = np.nan  # an undefined cell: out of every score
    measure = MEASURES["linear_cka"]
    scores = model_scores(observed, nulls, replicates, measure, ["a", "b", "c"],
                          list("vwxyz"))
    cells = [(i, j) for i in range(rows) for j in range(cols) if (i, j) != (2, 4)]
    matched = [(0, 0), (1, 2)]  # (2, 4) is the third row's match, and undefined
    for name, stat in (("max", lambda t: max(t[i, j] for i, j in cells)),
                       ("depth_mean", lambda t: np.mean([t[i, j] for i, j in matched]))):
        s = scores[name]
        value = stat(observed)
        shuffled = [stat(nulls[q]) for q in range(k)]
        null_mean = np.mean(shuffled)
        assert s.value == pytest.approx(value) and s.null_mean == pytest.approx(null_mean)
        assert s.p_value == pytest.approx((1 + sum(x >= value for x in shuffled)) / (k + 1))
        assert s.calibrated == pytest.approx((value - null_mean) / (1 - null_mean))
        low, high = jackknife_interval(value, [stat(r) for r in replicates])
        assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))
        assert s.calibrated_low == pytest.approx((low - null_mean) / (1 - null_mean))
        assert s.cells == (len(cells) if name == "max" else len(matched))
    assert (scores["max"].row, scores["max"].column) == ("b", "x")
    assert scores["max"].p_value == pytest.approx(1 / (k + 1))  # beats every shuffle


def test_a_distance_is_most_similar_at_its_smallest():
    observed = np.array([[0.5, 0.1], [0.3, 0.4]])
    nulls = np.full((9, 2, 2), 0.6)
    replicates = np.repeat(observed[None], 4, 0)
    s = model_scores(observed, nulls, replicates, MEASURES["procrustes"], ["a", "b"],
                     ["x", "y"])["max"]
    assert s.value == 0.1 and (s.row, s.column) == ("a", "y") and s.p_value == 0.1
    assert s.calibrated == pytest.approx((0.1 - 0.6) / (0 - 0.6))


def test_the_jackknife_of_a_mean_is_its_standard_error():
    """Left out one at a time, the jackknife's variance of a sample mean is s^2 / n exactly
    (Efron & Tibshirani 1993, 11.5); in groups, the groups' means' variance over G."""
    from scipy import stats

    x = np.random.default_rng(1).normal(size=40)
    loo = [np.delete(x, i).mean() for i in range(len(x))]
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    assert jackknife_interval(x.mean(), loo) == (pytest.approx(x.mean() - half),
                                                 pytest.approx(x.mean() + half))
    groups = jackknife_groups(len(x), seed=0, groups=8)
    assert sorted(np.concatenate(groups)) == list(range(40))  # disjoint, all of them
    means = np.array([x[grp].mean() for grp in groups])
    left_out = [np.delete(x, grp).mean() for grp in groups]
    half = stats.t.ppf(0.975, 7) * means.std(ddof=1) / math.sqrt(8)
    assert jackknife_interval(x.mean(), left_out) == (pytest.approx(x.mean() - half),
                                                      pytest.approx(x.mean() + half))
    assert all(math.isnan(v) for v in jackknife_interval(0.5, [0.5]))


def test_the_grid_s_jackknife_is_the_measure_without_each_group():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(60, 6))
    a = [torch.from_numpy(base @ rng.normal(size=(6, 10)) + rng.normal(size=(60, 10)))
         for _ in range(2)]
    b = [torch.from_numpy(base @ rng.normal(size=(6, 8)) + rng.normal(size=(60, 8)))
         for _ in range(3)]
    config = SimilarityConfig(permutations=19, null_examples=60, seed=3)
    t = similarity_table("linear_cka", a, b, config)
    cka = MEASURES["linear_cka"]

    def table(keep):
        return np.array([[float(cka(x[keep] - x[keep].mean(0), y[keep] - y[keep].mean(0)))
                          for y in b] for x in a])

    full = table(np.arange(60))
    assert np.allclose(t.observed, full)
    replicates = [table(np.setdiff1d(np.arange(60), grp)) for grp in jackknife_groups(60, 3)]
    for name, stat in (("max", np.max), ("depth_mean",
                                         lambda v: np.mean([v[0, 0], v[1, 2]]))):
        low, high = jackknife_interval(stat(full), [stat(r) for r in replicates])
        assert (t.scores[name].low, t.scores[name].high) == (pytest.approx(low),
                                                              pytest.approx(high))
        assert t.scores[name].low < t.scores[name].value < t.scores[name].high
    assert t.to_dict()["scores"]["depth_mean"]["cells"] == 2


def population_cka(ma: np.ndarray, mb: np.ndarray, noise_a: float, noise_b: float) -> float:
    """Linear CKA of a = z ma + noise_a e, b = z mb + noise_b e' (z, e, e' standard Gaussian):
    ||S_ab||^2 / (||S_aa|| ||S_bb||) with the population covariances."""
    s_ab = ma.T @ mb
    s_aa = ma.T @ ma + noise_a ** 2 * np.eye(ma.shape[1])
    s_bb = mb.T @ mb + noise_b ** 2 * np.eye(mb.shape[1])
    return float((s_ab ** 2).sum() / math.sqrt((s_aa ** 2).sum() * (s_bb ** 2).sum()))


@pytest.mark.slow
def test_the_intervals_cover_the_population_score():
    """Two 'networks' of three Gaussian layers each, driven by one shared latent, noisier
    layer by layer: the truth of each model-level score is computed from the population
    covariances; over 300 samples of 300 examples, the 95% jackknife interval covers it
    93-97.5% of the time, for the mean along depth and for the max (a well-separated best
    cell: where two cells nearly tie, the max is biased up and its interval too narrow)."""
    rng = np.random.default_rng(4)
    latent, n, reps = 4, 300, 300
    noise = (0.5, 1.5, 3.0)
    ma = [rng.normal(size=(latent, 6)) for _ in noise]
    mb = [rng.normal(size=(latent, 5)) for _ in noise]
    truth_table = np.array([[population_cka(x, y, na, nb)
                             for y, nb in zip(mb, noise, strict=True)]
                            for x, na in zip(ma, noise, strict=True)])
    truth = {"max": truth_table.max(), "depth_mean": np.mean(np.diag(truth_table))}
    config = SimilarityConfig(permutations=1, null_examples=n)
    covered = {name: 0 for name in truth}
    for _ in range(reps):
        z = rng.normal(size=(n, latent))
        a = [torch.from_numpy(z @ m + s * rng.normal(size=(n, m.shape[1])))
             for m, s in zip(ma, noise, strict=True)]
        b = [torch.from_numpy(z @ m + s * rng.normal(size=(n, m.shape[1])))
             for m, s in zip(mb, noise, strict=True)]
        t = similarity_table("linear_cka", a, b, config)
        for name, value in truth.items():
            covered[name] += t.scores[name].low <= value <= t.scores[name].high
    share = {name: c / reps for name, c in covered.items()}
    assert all(0.93 <= s <= 0.975 for s in share.values()), (share, truth_table)
