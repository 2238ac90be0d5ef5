"""The permutation null over a whole table: each shuffle's most similar cell (Westfall &
Young's max-T), family-wise p-values, the threshold and rescaled scores, checked against a
direct implementation and on unrelated Gaussian layers, where raw scores drift with width and
number of layers and the calibrated ones must not."""

import numpy as np
import pytest
import torch
from scipy import stats

from plato.similarity import MEASURES, SimilarityConfig, similarity_table
from plato.similarity.grid import SimilarityTable, null_family


def test_the_family_against_direct_loops():
    rng = np.random.default_rng(0)
    k, rows, cols = 19, 3, 4
    nulls = rng.random((k, rows, cols)) * 0.5
    observed = rng.random((rows, cols))
    observed[0, 0] = 0.99
    nulls[:, 2, 3] = np.nan  # an undefined cell
    observed[2, 3] = np.nan
    table = SimilarityTable("linear_cka", ["a", "b", "c"], ["w", "x", "y", "z"],
                            observed.copy(), [[None] * cols] * rows, 50)
    null_family(table, observed, nulls, MEASURES["linear_cka"])
    best = [max(nulls[s, i, j] for i in range(rows) for j in range(cols)
                if not np.isnan(nulls[s, i, j])) for s in range(k)]
    for i in range(rows):
        for j in range(cols):
            if np.isnan(observed[i, j]):
                assert np.isnan(table.fw_p_values[i, j]) and np.isnan(table.p_values[i, j])
                continue
            fw = (1 + sum(b >= observed[i, j] for b in best)) / (k + 1)
            own = (1 + sum(nulls[s, i, j] >= observed[i, j] for s in range(k))) / (k + 1)
            mean = nulls[:, i, j].mean()
            assert table.fw_p_values[i, j] == pytest.approx(fw)
            assert table.p_values[i, j] == pytest.approx(own) and fw >= own
            assert table.rescaled[i, j] == pytest.approx((observed[i, j] - mean) / (1 - mean))
    assert table.fw_threshold == pytest.approx(np.quantile(best, 0.95))
    assert table.fw_p_values[0, 0] == pytest.approx(1 / (k + 1))  # beats every shuffle


def unrelated_layers(rng, layers: int, width: int, n: int) -> list[torch.Tensor]:
    return [torch.from_numpy(rng.normal(size=(n, width))) for _ in range(layers)]


@pytest.mark.slow
def test_on_unrelated_layers_the_calibrated_maximum_stays_at_zero():
    """Independent Gaussian layers: the raw maximum of linear CKA over the table grows with
    the width and with the number of layers (more cells, and CKA's bias grows with d/n);
    the maximum rescaled to the null of the maximum stays near 0, and the family-wise p of
    the most similar cell is uniform (Kolmogorov-Smirnov at 0.01)."""
    rng = np.random.default_rng(0)
    config = SimilarityConfig(permutations=49, null_examples=40)
    raw, rescaled, depth = {}, {}, {}
    for layers in (1, 6):
        for width in (64, 1024):
            tables = [similarity_table("linear_cka", unrelated_layers(rng, layers, width, 40),
                                       unrelated_layers(rng, layers, width, 40), config)
                      for _ in range(8)]
            raw[(layers, width)] = np.mean([t.scores["max"].value for t in tables])
            rescaled[(layers, width)] = np.mean([t.scores["max"].calibrated for t in tables])
            depth[(layers, width)] = np.mean([t.scores["depth_mean"].calibrated for t in tables])
    assert raw[(1, 1024)] > raw[(1, 64)] + 0.1 and raw[(6, 64)] > raw[(1, 64)] + 0.02
    assert all(abs(v) < 0.1 for v in rescaled.values()), rescaled
    assert all(abs(v) < 0.1 for v in depth.values()), depth
    tables = [similarity_table("linear_cka", unrelated_layers(rng, 3, 128, 40),
                               unrelated_layers(rng, 3, 128, 40), config) for _ in range(120)]
    for score in ("max", "depth_mean"):  # the model-level p-values are uniform too
        p_values = [t.scores[score].p_value for t in tables]
        assert stats.kstest(p_values, "uniform").pvalue > 0.01, score
    # cell by cell, an unrelated pair has a "significant" cell far more often than 5% of the
    # time (30 null grids of Gaussian data: 63% had one, before the family-wise p)
    smallest = [np.nanmin(similarity_table(
        "linear_cka", unrelated_layers(rng, 3, 128, 40), unrelated_layers(rng, 3, 128, 40),
        config).p_values) for _ in range(60)]
    assert np.mean(np.array(smallest) <= 0.05) > 0.15


def test_a_related_pair_is_significant_family_wise():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(60, 16))
    a = [torch.from_numpy(base @ rng.normal(size=(16, 32))) for _ in range(3)]
    b = [torch.from_numpy(base @ rng.normal(size=(16, 24))) for _ in range(3)]
    t = similarity_table("linear_cka", a, b, SimilarityConfig(permutations=49,
                                                              null_examples=60))
    best = t.scores["max"]
    assert best.p_value == pytest.approx(1 / 50) and best.calibrated > 0.5
    assert best.p_value == t.fw_p_values[t.rows.index(best.row), t.columns.index(best.column)]
    assert (t.fw_p_values <= 0.05).all()
