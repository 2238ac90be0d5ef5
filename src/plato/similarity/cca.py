"""The CCA family: mean canonical correlation, SVCCA (Raghu et al. 2017) and PWCCA (Morcos,
Raghu & Bengio 2018).

Canonical correlations of centred x and y are the singular values of Ux^T Uy, where Ux and Uy
are orthonormal bases of their column spaces (from an SVD; directions with a singular value
below base.rank_tolerance, the size of rounding, count as absent).

    cca    the mean canonical correlation: invariant to any invertible linear map
    svcca  CCA after keeping, on each side, the top singular directions that explain 99% of its
           variance; the truncation is not invariant to general linear maps
    pwcca  canonical correlations weighted by how much of x's own units each canonical variate
           accounts for (sum of |<h_i, x_j>| over units j); asymmetric: x is the reference

When the two ranks together reach the number of examples (minus one for the centring), the
column spaces must meet and some correlations are 1 by construction: the value is NaN with
that reason, not a spurious 1.
"""

from __future__ import annotations

import torch

from plato.similarity.base import Score, prepare, rank_tolerance, register, undefined


def _svd(m: torch.Tensor, keep: float | None = None):
    """(U, S, V^T) of a centred side, truncated to its rank or to `keep` of its variance."""
    u, s, vt = torch.linalg.svd(m, full_matrices=False)
    rank = int((s > rank_tolerance(s[0], m.shape, m.dtype)).sum()) if len(s) and s[0] > 0 \
        else 0
    if keep is not None and rank:
        var = s[:rank].square()
        rank = int((torch.cumsum(var, 0) / var.sum() < keep).sum()) + 1
        rank = min(rank, len(s))
    return u[:, :rank], s[:rank], vt[:rank]


def _canonical(a: torch.Tensor, b: torch.Tensor, keep: float | None):
    ua, sa, vta = _svd(a, keep)
    ub, _, _ = _svd(b, keep)
    n = len(a)
    if ua.shape[1] + ub.shape[1] > n - 1:
        return undefined(
            f"CCA needs more examples than the two ranks together: n={n}, ranks "
            f"{ua.shape[1]} and {ub.shape[1]}; use more examples or layout='pool'/'positions'")
    p, rho, _ = torch.linalg.svd(ua.T @ ub)  # p: (ra, ra); rho: min(ra, rb), descending
    return ua, sa, vta, p[:, : len(rho)], rho.clamp(0, 1)


def cca(x, y, *, layout: str = "flatten") -> Score:
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    out = _canonical(*pair, keep=None)
    return out if isinstance(out, Score) else Score(float(out[-1].mean()))


def svcca(x, y, *, keep: float = 0.99, layout: str = "flatten") -> Score:
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    out = _canonical(*pair, keep=keep)
    return out if isinstance(out, Score) else Score(float(out[-1].mean()))


def pwcca(x, y, *, layout: str = "flatten") -> Score:
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    out = _canonical(*pair, keep=None)
    if isinstance(out, Score):
        return out
    _, s, vt, p, rho = out
    # <h_i, x_j> for canonical variates h_i = Ux p_i and units x_j = (U S V^T)_j: p_i^T S V^T.
    weights = (p.T @ (s[:, None] * vt)).abs().sum(1)  # (k,)
    return Score(float((weights * rho).sum() / weights.sum()))


register("cca", cca, larger_is_more_similar=True,
         invariant_to=("orthogonal", "isotropic-scaling", "translation", "invertible-linear",
                       "permutation"),
         identity=1.0, description="mean canonical correlation")
register("svcca", svcca, larger_is_more_similar=True,
         invariant_to=("orthogonal", "isotropic-scaling", "translation", "permutation"),
         identity=1.0, description="SVCCA: CCA on the directions holding 99% of the variance")
register("pwcca", pwcca, larger_is_more_similar=True,
         invariant_to=("isotropic-scaling", "translation", "permutation"),
         identity=1.0, description="projection-weighted CCA, x as the reference")
