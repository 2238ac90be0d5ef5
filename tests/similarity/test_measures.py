"""Similarity measures against direct implementations of the published formulas, and against
the invariances each one claims."""

import math

import numpy as np
import pytest
import torch

from plato.errors import PlatoError
from plato.similarity import (
    MEASURES,
    TRANSFORMS,
    cca,
    linear_cka,
    minibatch_cka,
    procrustes,
    procrustes_similarity,
    pwcca,
    rbf_cka,
    svcca,
)
from plato.similarity.base import as_matrix


def related(n=300, dx=12, dy=9, seed=0):
    """Two related but different representations of the same n examples."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) @ rng.normal(size=(dx, dx))
    y = np.tanh(x @ rng.normal(size=(dx, dy)) / 3) + 0.3 * rng.normal(size=(n, dy))
    return x, y


# -- direct implementations, written from the papers, no shortcuts ---------------------------

def centring(n):
    return np.eye(n) - np.ones((n, n)) / n


def hsic_biased(k, l_):
    n = len(k)
    h = centring(n)
    return np.trace(k @ h @ l_ @ h) / (n - 1) ** 2


def hsic_unbiased(k, l_):  # Song et al. (2012), eq. (5)
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def cka_direct(k, l_, hsic):
    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


def rbf_gram_direct(x, sigma=0.8):
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    med = np.median(sq[sq > 0])
    return np.exp(-sq / (2 * sigma ** 2 * med))


def canonical_correlations(x, y):
    """Classical CCA: singular values of Sxx^-1/2 Sxy Syy^-1/2."""
    x, y = x - x.mean(0), y - y.mean(0)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w ** -0.5) @ v.T

    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    wx, wy = inv_sqrt(sxx), inv_sqrt(syy)
    u, rho, _ = np.linalg.svd(wx @ sxy @ wy)
    return rho, x @ wx @ u  # correlations and x's canonical variates (columns)


def svd_reduce(x, keep):
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    frac = np.cumsum(s ** 2) / (s ** 2).sum()
    k = int((frac < keep).sum()) + 1
    return u[:, :k] * s[:k]


# -- agreement with the formulas --------------------------------------------------------------

def test_cka_family_matches_the_published_formulas():
    x, y = related()
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = x @ x.T, y @ y.T
    assert abs(linear_cka(x, y) - cka_direct(k, l_, hsic_biased)) < 1e-6
    # The unbiased HSIC is exactly invariant to translation: raw and centred Grams agree.
    assert abs(linear_cka(x, y, debiased=True) - cka_direct(k, l_, hsic_unbiased)) < 1e-6
    assert abs(cka_direct(xc @ xc.T, yc @ yc.T, hsic_unbiased)
               - cka_direct(k, l_, hsic_unbiased)) < 1e-9
    assert abs(rbf_cka(x, y) - cka_direct(rbf_gram_direct(x), rbf_gram_direct(y),
                                          hsic_biased)) < 1e-6
    # Nguyen et al.: unbiased HSIC averaged over minibatches, then the ratio.
    b = 60
    xy = sum(hsic_unbiased(x[i:i + b] @ x[i:i + b].T, y[i:i + b] @ y[i:i + b].T)
             for i in range(0, 300, b))
    xx = sum(hsic_unbiased(x[i:i + b] @ x[i:i + b].T, x[i:i + b] @ x[i:i + b].T)
             for i in range(0, 300, b))
    yy = sum(hsic_unbiased(y[i:i + b] @ y[i:i + b].T, y[i:i + b] @ y[i:i + b].T)
             for i in range(0, 300, b))
    assert abs(minibatch_cka(x, y, batch_size=b) - xy / math.sqrt(xx * yy)) < 1e-6


def test_wide_layers_give_the_same_values_as_narrow_arithmetic():
    """More features than examples takes the Gram route; the answer may not change."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 500))
    y = x[:, :300] @ rng.normal(size=(300, 300)) + rng.normal(size=(40, 300))
    k, l_ = x @ x.T, y @ y.T
    assert abs(linear_cka(x, y) - cka_direct(k, l_, hsic_biased)) < 1e-6
    assert abs(linear_cka(x, y, debiased=True) - cka_direct(k, l_, hsic_unbiased)) < 1e-6
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    nuc = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    assert abs(procrustes_similarity(x, y) - nuc) < 1e-6


def test_procrustes_is_the_residual_of_the_best_rotation():
    x, y = related(dx=8, dy=8)
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    u, _, vt = np.linalg.svd(xc.T @ yc)
    rotation = u @ vt  # the orthogonal Procrustes solution
    residual = np.linalg.norm(xc @ rotation - yc)
    assert abs(procrustes(x, y) - residual) < 1e-6
    assert abs(procrustes_similarity(x, y) - np.linalg.svd(xc.T @ yc, compute_uv=False).sum()) \
        < 1e-6


def test_cca_family_matches_classical_cca():
    x, y = related()
    rho, variates = canonical_correlations(x, y)
    assert abs(cca(x, y) - rho.mean()) < 1e-6
    rx, ry = svd_reduce(x, 0.99), svd_reduce(y, 0.99)
    assert abs(svcca(x, y) - canonical_correlations(rx, ry)[0].mean()) < 1e-6
    # PWCCA: weight each correlation by sum_j |<h_i, x_j>| over x's centred units.
    h = variates[:, : len(rho)] / np.linalg.norm(variates[:, : len(rho)], axis=0)
    weights = np.abs(h.T @ (x - x.mean(0))).sum(1)
    assert abs(pwcca(x, y) - (weights * rho).sum() / weights.sum()) < 1e-6


# -- invariances --------------------------------------------------------------------------------

def transform(name, m, rng):
    d = m.shape[1]
    if name == "orthogonal":
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return m @ q
    if name == "isotropic-scaling":
        return 3.7 * m
    if name == "translation":
        return m + 5 * rng.normal(size=d)
    if name == "invertible-linear":  # well conditioned but far from orthogonal
        a = np.diag(np.linspace(0.2, 3, d)) @ np.linalg.qr(rng.normal(size=(d, d)))[0]
        return m @ a
    if name == "permutation":
        return m[:, rng.permutation(d)]
    if name == "elementwise-nonlinear":
        return np.tanh(m / m.std())
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_each_measure_keeps_exactly_its_claimed_invariances(name):
    measure = MEASURES[name]
    x, y = related()
    base = measure(x, y)
    assert math.isfinite(base)
    for t in (*TRANSFORMS, "elementwise-nonlinear"):
        rng = np.random.default_rng(7)
        ty = transform(t, y, rng)
        tx = transform(t, x, np.random.default_rng(8))
        if t in measure.invariant_to:
            assert abs(measure(x, ty) - base) < 1e-6, (name, t, "on y")
            assert abs(measure(tx, y) - base) < 1e-6, (name, t, "on x")
            assert abs(measure(x, transform(t, x, rng)) - measure.identity) < 1e-6, (name, t)
        else:
            moved = max(abs(measure(x, ty) - base), abs(measure(tx, y) - base))
            assert moved > 1e-3, (name, t, "claims nothing here but did not move")
    assert measure.invariant_to <= set(TRANSFORMS)


def test_identity_values_and_direction():
    x, _ = related()
    for name, measure in MEASURES.items():
        assert abs(measure(x, x) - measure.identity) < 1e-6, name
    assert not MEASURES["procrustes"].larger_is_more_similar
    assert MEASURES["cka"].larger_is_more_similar


# -- numerics and degenerate input --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MEASURES))
def test_degenerate_input_gives_nan_with_a_reason(name):
    measure = MEASURES[name]
    x, y = related(n=50)
    for a, b, why in ((x[:3], y[:3], "at least 4"),
                      (np.ones_like(x), y, "constant"),
                      (np.where(np.arange(50)[:, None] == 5, np.nan, x), y, "non-finite")):
        score = measure(a, b)
        assert math.isnan(score) and score.reason and why in score.reason, (name, why,
                                                                           score.reason)
    assert measure(x, y).reason is None


def test_debiased_cka_can_be_negative_without_a_crash():
    rng = np.random.default_rng(3)
    values = [linear_cka(rng.normal(size=(8, 3)), rng.normal(size=(8, 3)), debiased=True)
              for _ in range(20)]
    assert all(math.isfinite(v) for v in values) and min(values) < 0


def test_cca_with_too_few_examples_is_nan_not_one():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 15)), rng.normal(size=(20, 15))  # independent
    score = cca(x, y)
    assert math.isnan(score) and "ranks" in score.reason


def test_minibatch_cka_approaches_the_full_debiased_cka():
    gaps = []
    for n in (512, 32768):
        x, y = related(n=n, dx=10, dy=6, seed=5)
        gaps.append(abs(minibatch_cka(x, y, batch_size=256)
                        - linear_cka(x, y, debiased=True)))
    assert gaps[1] < 0.01 and gaps[1] < gaps[0]


def test_layouts_of_conv_activations():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert as_matrix(t).shape == (2, 60)
    assert as_matrix(t, "pool").shape == (2, 3)
    rows = as_matrix(t, "positions")
    assert rows.shape == (40, 3) and torch.equal(rows[1], t[0, :, 0, 1].double())
    with pytest.raises(PlatoError, match="same spatial size"):
        linear_cka(t, t[:, :, :2], layout="positions")
    with pytest.raises(PlatoError, match="layout"):
        linear_cka(t, t, layout="channels")


@pytest.mark.parametrize("name", ["cca", "svcca", "linear_cka", "procrustes_similarity"])
def test_a_wide_low_rank_layer_has_its_rank_on_the_grid_path(name):
    """The grid replaces a wide layer (n x d, d > n) by a factor of its Gram matrix; the
    factor's rank must be the layer's, not rounding (n = 100, d = 300, rank 20: rounding once
    counted 59 and CCA was NaN there while the direct call gave a value)."""
    from plato.similarity.grid import GRAM_ONLY
    from plato.similarity.procrustes import gram_factor

    assert name in GRAM_ONLY
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(100, 20)) @ rng.normal(size=(20, 300)))
    y = torch.from_numpy(rng.normal(size=(100, 30)) @ rng.normal(size=(30, 40))
                         + x.numpy()[:, :40] * 0.1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert np.linalg.matrix_rank(gram_factor(xc).numpy()) == np.linalg.matrix_rank(xc.numpy())
    direct, grid = MEASURES[name].fn(x, y), MEASURES[name].fn(gram_factor(xc), gram_factor(yc))
    assert math.isfinite(direct)
    assert float(grid) == pytest.approx(float(direct), rel=1e-9, abs=1e-12)


def test_mutual_knn_against_a_direct_count():
    """Huh et al. (2024)'s mutual k-NN alignment, counted by hand: each example's k nearest
    other examples (Euclidean, after centring) in both representations, the shared share;
    unrelated representations share k/(n - 1) on average."""
    from plato.similarity.knn import chance, mutual_knn

    rng = np.random.default_rng(0)
    x, y = related(n=60)

    def nearest(m, i, k):
        d = ((m - m[i]) ** 2).sum(1)
        d[i] = np.inf
        return set(np.argsort(d, kind="stable")[:k])

    xc, yc = x - x.mean(0), y - y.mean(0)
    for k in (3, 10):
        direct = np.mean([len(nearest(xc, i, k) & nearest(yc, i, k)) / k for i in range(60)])
        assert float(mutual_knn(torch.from_numpy(x), torch.from_numpy(y), k=k)) == \
            pytest.approx(direct)
    unrelated = [float(mutual_knn(torch.from_numpy(rng.normal(size=(101, 20))),
                                  torch.from_numpy(rng.normal(size=(101, 20)))))
                 for _ in range(40)]
    assert np.mean(unrelated) == pytest.approx(chance(101), abs=0.02)  # 10/100
    assert float(mutual_knn(torch.from_numpy(x), torch.from_numpy(x))) == 1.0
    assert math.isnan(mutual_knn(torch.zeros(8, 3) + torch.arange(8.)[:, None],
                                 torch.ones(8, 3)))  # y constant: undefined
