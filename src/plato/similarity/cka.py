"""Centred kernel alignment (Kornblith et al. 2019), in float64.

    linear_cka     linear kernel; biased HSIC, or debiased=True for the unbiased HSIC estimator
                   of Song et al. (2012) (features centred first, as Kornblith et al. do)
    rbf_cka        Gaussian kernel, bandwidth sigma x the median pairwise distance
    minibatch_cka  Nguyen, Raghu & Kornblith (2021): unbiased HSIC averaged over minibatches,
                   streamed (`MinibatchCKA`), so memory never grows with the data

CKA is 1 for representations equal up to rotation and isotropic scaling, and invariant to
translation; it is not invariant to a general invertible linear map. The debiased HSIC can
be negative, so debiased CKA can be too; a non-positive self-HSIC gives NaN with a reason.
"""

from __future__ import annotations

import math

import torch

from plato.device import layout_of
from plato.errors import PlatoError
from plato.similarity.base import MIN_EXAMPLES, Score, as_matrix, prepare, register, undefined


def _hsic_debias(cross: torch.Tensor, k: torch.Tensor, l_: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC from tr(K L) of centred data and the Grams' diagonals k, l.

    On K~ = K with a zero diagonal: for centred x, K 1 = 0, so 1^T K~ 1 = -sum(k) and
    K~ 1 = -k; Song et al.'s estimator then needs only these terms.
    """
    n = len(k)
    trace = cross - k @ l_
    return (trace + k.sum() * l_.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * (k @ l_)) / (
        n * (n - 3))


def _hsic_triplet(x: torch.Tensor, y: torch.Tensor, debiased: bool):
    """(HSIC(x, y), HSIC(x, x), HSIC(y, y)) of centred x, y, up to a common factor; each
    product formed once, in feature space or Gram space, whichever is smaller."""
    n = len(x)
    if x.shape[1] * y.shape[1] <= n * n:
        xx, yy, xy = (x.T @ x).square().sum(), (y.T @ y).square().sum(), (x.T @ y).square().sum()
    else:
        k, l_ = x @ x.T, y @ y.T
        xx, yy, xy = k.square().sum(), l_.square().sum(), (k * l_).sum()
    if not debiased:
        return xy, xx, yy
    kd, ld = x.square().sum(1), y.square().sum(1)  # the Grams' diagonals
    return _hsic_debias(xy, kd, ld), _hsic_debias(xx, kd, kd), _hsic_debias(yy, ld, ld)


def centred_gram(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The linear Gram matrix of centred rows: (n, ...) -> (n, n), centred and multiplied in
    `dtype` (float32: ~1e-6 relative error, and faster)."""
    if layout_of(x) is torch.channels_last:
        x = x.permute(0, 2, 3, 1)  # features in memory order (a Gram ignores their order): a view
    x = x.reshape(len(x), -1).to(dtype)  # (n, ...) -> (n, d)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def cka_from_grams(k: torch.Tensor, l_: torch.Tensor) -> Score:
    """Biased linear CKA from two centred Grams (reuse one Gram against many); the sums in
    float64."""
    k, l_ = k.double(), l_.double()
    return _cka((k * l_).sum(), k.square().sum(), l_.square().sum())


def _cka(hxy: torch.Tensor, hxx: torch.Tensor, hyy: torch.Tensor) -> Score:
    hxy, hxx, hyy = float(hxy), float(hxx), float(hyy)
    if not (hxx > 0 and hyy > 0):
        return undefined(f"a self-HSIC is not positive ({hxx:.3g}, {hyy:.3g}): the "
                         "representation carries no signal the estimator can see")
    return Score(hxy / math.sqrt(hxx * hyy))


def linear_cka(x, y, *, debiased: bool = False, layout: str = "flatten") -> Score:
    """Linear CKA between two representations of the same examples."""
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    return _cka(*_hsic_triplet(*pair, debiased))


def _rbf_gram(x: torch.Tensor, sigma: float) -> torch.Tensor:
    sq = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square()  # (n, n)
    positive = sq[sq > 0].sort().values
    m = len(positive)  # the median of the positive squared distances, midpoint when m is even
    median = (positive[(m - 1) // 2] + positive[m // 2]) / 2 if m else sq.new_tensor(1.0)
    return torch.exp(-sq / (2 * sigma ** 2 * median))


def _centre_gram(k: torch.Tensor) -> torch.Tensor:
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def rbf_cka(x, y, *, sigma: float = 0.8, layout: str = "flatten") -> Score:
    """CKA with Gaussian kernels whose width is `sigma` times the median distance (biased)."""
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    k, l_ = (_centre_gram(_rbf_gram(m, sigma)) for m in pair)
    return _cka((k * l_).sum(), (k * k).sum(), (l_ * l_).sum())


# --------------------------------------------------------------------------------------------
# Minibatch CKA: streaming
# --------------------------------------------------------------------------------------------

def unbiased_hsic_terms(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K~ flattened, 1^T K~ 1, K~ 1) of a raw (uncentred) Gram matrix K, K~ = K - diag(K).

    The unbiased HSIC of two Grams is then, with n examples,
        [<K~, L~> + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) <K~1, L~1>] / (n(n-3)),
    which is linear in each term, so many layer pairs come from a few matrix products.
    """
    kt = gram - torch.diag_embed(torch.diagonal(gram))
    return kt.reshape(-1), kt.sum(), kt.sum(1)


def hsic_from_terms(a: tuple, b: tuple, n: int) -> torch.Tensor:
    """Unbiased HSIC for stacks of terms: a's tensors have a leading axis of N layers, b's of M;
    the result is (N, M)."""
    (fa, sa, ra), (fb, sb, rb) = a, b
    return (fa @ fb.T + torch.outer(sa, sb) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (ra @ rb.T)) / (
        n * (n - 3))


class MinibatchCKA:
    """Streaming minibatch CKA between N representations on one side and M on the other.

    `update(xs, ys)` takes one minibatch of each (lists of (b, ...) tensors, same b); `value()`
    gives the (N, M) matrix. Each layer's Gram is formed once per batch and every pair follows
    from two matrix products; the sums stay on the device, with no host synchronisation.
    """

    def __init__(self, layout: str = "flatten") -> None:
        if layout == "positions":  # batches are of examples; layers' position counts differ
            raise PlatoError("minibatch CKA compares examples: use layout 'flatten' or 'pool' "
                             "(or a whole-matrix measure such as linear_cka for 'positions')")
        self.layout = layout
        self.xy = self.xx = self.yy = None
        self.batches = 0
        self.reason: str | None = None

    def _terms(self, reps: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Centring each batch is a translation, to which the unbiased HSIC is exactly
        # invariant; it only keeps the float64 sums well conditioned.
        mats = (as_matrix(r, self.layout) for r in reps)
        mats = (m - m.mean(0, keepdim=True) for m in mats)
        terms = [unbiased_hsic_terms(m @ m.T) for m in mats]
        return tuple(torch.stack(t) for t in zip(*terms, strict=True))

    @torch.no_grad()
    def update(self, xs: list, ys: list) -> None:
        n = len(xs[0])
        if n < MIN_EXAMPLES:  # the estimator needs 4 examples; a short last batch is skipped
            return
        a, b = self._terms(xs), self._terms(ys)
        xy = hsic_from_terms(a, b, n)
        xx = hsic_from_terms(a, a, n).diagonal()  # self terms only: (N,)
        yy = hsic_from_terms(b, b, n).diagonal()
        if self.xy is None:
            self.xy, self.xx, self.yy = xy, xx, yy
        else:
            self.xy, self.xx, self.yy = self.xy + xy, self.xx + xx, self.yy + yy
        self.batches += 1

    def value(self) -> tuple[torch.Tensor, list[list[str | None]]]:
        """(N, M) float64 matrix on the CPU and, per cell, the reason it is NaN (or None)."""
        if self.xy is None:
            raise ValueError("minibatch CKA saw no batch of at least 4 examples")
        xy, xx, yy = self.xy.cpu(), self.xx.cpu(), self.yy.cpu()
        out = torch.full(xy.shape, math.nan, dtype=torch.float64)
        reasons: list[list[str | None]] = [[None] * xy.shape[1] for _ in range(xy.shape[0])]
        for i in range(xy.shape[0]):
            for j in range(xy.shape[1]):
                score = _cka(xy[i, j], xx[i], yy[j])
                out[i, j], reasons[i][j] = float(score), score.reason
        if not all(bool(torch.isfinite(t).all()) for t in (xy, xx, yy)):
            for i, j in zip(*torch.nonzero(~torch.isfinite(out), as_tuple=True), strict=True):
                reasons[i][j] = "non-finite activations"
        return out, reasons


def minibatch_cka(x, y, *, batch_size: int = 256, layout: str = "flatten") -> Score:
    """Minibatch CKA of two whole representations, split into consecutive batches."""
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(y)
    if len(x) != len(y):
        raise PlatoError(f"both representations must hold the same examples: {len(x)} rows "
                         f"vs {len(y)}")
    # The checks every measure makes, without a float64 copy of the whole data.
    if len(x) < MIN_EXAMPLES:
        return undefined(f"{len(x)} examples: a similarity needs at least {MIN_EXAMPLES}")
    for name, m in (("x", x), ("y", y)):
        if not bool(torch.isfinite(m).all()):
            return undefined(f"{name} holds non-finite values")
        if not bool((m != m[:1]).any()):
            return undefined(f"{name} is constant over the examples")
    acc = MinibatchCKA(layout)
    for i in range(0, len(x), batch_size):
        acc.update([x[i:i + batch_size]], [y[i:i + batch_size]])
    value, reasons = acc.value()
    return Score(float(value[0, 0]), reasons[0][0])


_CKA_INVARIANCES = ("orthogonal", "isotropic-scaling", "translation", "permutation")
register("cka", minibatch_cka, larger_is_more_similar=True, invariant_to=_CKA_INVARIANCES,
         identity=1.0, description="minibatch linear CKA (unbiased HSIC), streaming")
register("linear_cka", linear_cka, larger_is_more_similar=True,
         invariant_to=_CKA_INVARIANCES, identity=1.0, description="linear CKA, biased HSIC")
register("linear_cka_debiased", linear_cka, larger_is_more_similar=True,
         invariant_to=_CKA_INVARIANCES, identity=1.0,
         description="linear CKA, unbiased HSIC", debiased=True)
register("rbf_cka", rbf_cka, larger_is_more_similar=True, invariant_to=_CKA_INVARIANCES,
         identity=1.0, description="RBF-kernel CKA, bandwidth 0.8 x median distance")
