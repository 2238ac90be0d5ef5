"""All layer pairs in one pass: the same numbers as comparing each pair on its own."""

import math

import numpy as np
import pytest
import torch

import plato
from plato.data.loader import make_loader
from plato.models import cut_graph
from plato.similarity import MEASURES, SimilarityConfig, minibatch_cka, similarity_grid


def activations(net, digits, batch_size):
    """Each cut point's activations on the test split, the naive way: one prefix per point."""
    graph = cut_graph(net)
    out = {}
    for p in graph.points():
        prefix, _ = graph.split(p)
        with torch.no_grad():
            out[p.name] = torch.cat([prefix(x) for x, _ in make_loader(digits, "test",
                                                                         batch_size)])
    return out


@pytest.mark.slow
def test_grid_equals_pairwise_calls(digits, two_nets):
    a, b = two_nets
    names = ["cka", "linear_cka", "linear_cka_debiased", "procrustes", "svcca", "pwcca",
             "rbf_cka"]
    tables = similarity_grid(a, b, digits, names, SimilarityConfig(batch_size=64, collect=300),
                             device="cpu")
    acts_a, acts_b = activations(a, digits, 64), activations(b, digits, 64)
    assert tables["cka"].rows == list(acts_a) and tables["cka"].columns == list(acts_b)
    assert tables["cka"].examples == len(digits.test) and tables["procrustes"].examples == 300
    for name in names:
        t = tables[name]
        for i, pa in enumerate(t.rows):
            for j, pb in enumerate(t.columns):
                if name == "cka":
                    expected = minibatch_cka(acts_a[pa], acts_b[pb], batch_size=64)
                else:
                    expected = MEASURES[name](acts_a[pa][:300], acts_b[pb][:300])
                got = t.values[i, j]
                if math.isnan(expected):
                    assert math.isnan(got) and t.reasons[i][j] == expected.reason
                else:
                    assert abs(got - expected) < 1e-6, (name, pa, pb, got, expected)


def test_a_network_against_itself_is_identical_on_the_diagonal(digits, two_nets):
    a, _ = two_nets
    tables = similarity_grid(a, a, digits, ["cka", "procrustes"],
                             SimilarityConfig(batch_size=90, collect=200), device="cpu")
    np.testing.assert_allclose(np.diag(tables["cka"].values), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.diag(tables["procrustes"].values), 0.0, atol=1e-5)
    rows = tables["cka"].rows  # on 8x8 digits layer4.0 is 1x1, so pool equals it exactly
    assert tables["cka"].values[rows.index("stem"), rows.index("pool")] < 0.9


def test_positions_layout_with_different_sizes_is_nan_with_a_reason(digits, two_nets):
    a, _ = two_nets
    t = similarity_grid(a, a, digits, ["linear_cka"],
                        SimilarityConfig(layout="positions", collect=100),
                        points_a=["stem", "layer2.0"], points_b=["stem", "layer2.0"],
                        device="cpu")["linear_cka"]
    assert np.isfinite(t.values[0, 0]) and np.isfinite(t.values[1, 1])
    assert math.isnan(t.values[0, 1]) and "spatial" in t.reasons[0][1]


@pytest.mark.parametrize("measure, layout", [("linear_cka", "flatten"),
                                             ("procrustes", "positions"), ("cka", "flatten")])
def test_permutation_null_is_the_measure_on_shuffled_pairs(digits, two_nets, measure, layout):
    """The null of a cell is the measure on the first n examples with B's examples shuffled
    against A's (whole examples: every spatial position of one example moves together); the
    p-value counts the shuffles at least as similar as the true pairing."""
    a, b = two_nets
    k, n = 9, 120
    config = SimilarityConfig(layout=layout, collect=200, batch_size=60, permutations=k,
                              null_examples=n, seed=4)
    t = similarity_grid(a, b, digits, [measure], config, points_a=["stem", "layer2.0"],
                        points_b=["stem", "block2"], device="cpu")[measure]
    acts_a, acts_b = activations(a, digits, 64), activations(b, digits, 64)
    generator = torch.Generator().manual_seed(4)
    perms = [torch.randperm(n, generator=generator) for _ in range(k)]
    larger = MEASURES[measure].larger_is_more_similar
    for i, pa in enumerate(t.rows):
        for j, pb in enumerate(t.columns):
            x, y = acts_a[pa][:n], acts_b[pb][:n]
            if layout == "positions" and x.shape[2:] != y.shape[2:]:
                assert math.isnan(t.p_values[i, j])  # undefined cells have no null
                continue
            observed = float(MEASURES[measure](x, y, layout=layout))
            null = np.array([float(MEASURES[measure](x, y[p], layout=layout)) for p in perms])
            closer = (null >= observed) if larger else (null <= observed)
            assert t.null_mean[i, j] == pytest.approx(null.mean(), abs=1e-6)
            assert t.calibrated[i, j] == pytest.approx(observed - null.mean(), abs=1e-6)
            assert t.p_values[i, j] == pytest.approx((1 + closer.sum()) / (k + 1))
    assert t.permutations == k and t.null_examples == n


def test_a_network_against_itself_beats_every_shuffle(digits, two_nets):
    a, _ = two_nets
    t = similarity_grid(a, a, digits, ["cka"], SimilarityConfig(permutations=19,
                                                                null_examples=200),
                        device="cpu")["cka"]
    np.testing.assert_allclose(np.diag(t.p_values), 1 / 20)  # the smallest p possible
    assert (np.diag(t.calibrated) > 0.5).all() and np.abs(t.null_mean).max() < 0.2
    assert "p_values" in t.to_dict() and "p_values" not in similarity_grid(
        a, a, digits, ["cka"], device="cpu")["cka"].to_dict()
    with pytest.raises(plato.PlatoError, match="permutations"):
        SimilarityConfig(permutations=-1)
