"""Orthogonal Procrustes distance and similarity (Ding, Denain & Steinhardt 2021; Williams et
al. 2021).

Both sides are centred and scaled to unit Frobenius norm; the best orthogonal map of one onto
the other (a partial isometry when the widths differ) leaves a squared error of
2 - 2 ||x^T y||_*, the nuclear norm of the cross-covariance.

    procrustes             the distance sqrt(2 - 2 ||x^T y||_*): 0 for identical shapes
    procrustes_similarity  ||x^T y||_* in [0, 1]: 1 for identical shapes

Invariant to orthogonal maps, isotropic scaling and translation; not to other linear maps.
"""

from __future__ import annotations

import math

import torch

from plato.similarity.base import Score, prepare, rank_tolerance, register


def gram_factor(m: torch.Tensor) -> torch.Tensor:
    """A matrix with the same Gram m m^T and at most n columns: (n, d) -> (n, min(n, d)).

    Everything here depends on a side only through its Gram matrix, so a very wide layer can
    be replaced by this factor without changing any value.
    """
    if m.shape[1] <= m.shape[0]:
        return m
    return factor_of_gram(m @ m.T, m.shape)


def factor_of_gram(gram: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(n, n) the factor of the Gram m m^T of an (n, d) float64 matrix m of `shape`: its
    eigenvectors scaled by the square roots of their eigenvalues."""
    vals, vecs = torch.linalg.eigh(gram)
    # An eigenvalue of the Gram below its rounding is no direction: kept, its square root
    # (~1e-8 of the largest in float64) would pass any rank test of the factor.
    floor = rank_tolerance(vals[-1], shape, gram.dtype) * (vals[-1] > 0)
    return vecs * torch.where(vals > floor, vals, torch.zeros_like(vals)).sqrt()


def nuclear_alignment(x: torch.Tensor, y: torch.Tensor) -> float:
    """||x^T y||_* for centred, unit-norm x and y."""
    return float(torch.linalg.svdvals(gram_factor(x).T @ gram_factor(y)).sum())


def _unit(pair):
    a, b = pair
    return a / torch.linalg.norm(a), b / torch.linalg.norm(b)


def procrustes_similarity(x, y, *, layout: str = "flatten") -> Score:
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    return Score(min(1.0, nuclear_alignment(*_unit(pair))))


def procrustes(x, y, *, layout: str = "flatten") -> Score:
    similarity = procrustes_similarity(x, y, layout=layout)
    if math.isnan(similarity):
        return similarity
    return Score(math.sqrt(max(0.0, 2 - 2 * similarity)))


_INVARIANCES = ("orthogonal", "isotropic-scaling", "translation", "permutation")
register("procrustes", procrustes, larger_is_more_similar=False, invariant_to=_INVARIANCES,
         identity=0.0, description="orthogonal Procrustes distance")
register("procrustes_similarity", procrustes_similarity, larger_is_more_similar=True,
         invariant_to=_INVARIANCES, identity=1.0,
         description="orthogonal Procrustes similarity, nuclear norm of x^T y")
