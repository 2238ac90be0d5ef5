"""All layer pairs in one pass: the same numbers as comparing each pair on its own."""

import math

import numpy as np
import pytest
import torch

import plato
from plato.data.loader import make_loader
from plato.models import CutGraph
from plato.similarity import MEASURES, SimilarityConfig, minibatch_cka, similarity_grid


@pytest.fixture(scope="module")
def digits():
    return plato.load_dataset("digits")


@pytest.fixture(scope="module")
def two_nets(digits):
    torch.manual_seed(0)
    a = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape).eval()
    torch.manual_seed(1)
    b = plato.create_model("cnn-3", width=8, input_shape=digits.input_shape).eval()
    return a, b


def activations(net, digits, batch_size):
    """Each cut point's activations on the test split, the naive way: one prefix per point."""
    graph = CutGraph(net)
    out = {}
    for p in graph.points():
        prefix, _ = graph.split(p)
        with torch.no_grad():
            out[p.name] = torch.cat([prefix(x) for x, _ in make_loader(digits, "test",
                                                                         batch_size)])
    return out


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
