"""The closed forms: least squares from sufficient statistics, and how each linear stitch type
takes the fitted map.

    LstsqStats            float64 sums of design rows X and targets Y, streamed
    LstsqStats.solve      ridge least squares Y ~ X W + b -> LinearFit
    affine                a single linear layer (conv1x1, plato) set to X W + b
    standardised_affine   BatchNorm, linear, BatchNorm (bn-conv1x1-bn) computing X W + b
    reduced_rank          two linear layers through R units (lowrank-R): reduced-rank
                          regression onto the top-R principal axes of the fitted values
    orthogonal            one scale times a (semi-)orthogonal map, plus bias: orthogonal
                          Procrustes with scaling and translation, by SVD (orthogonal)
    unit_matching         each output unit one input unit, scaled, plus bias: the
                          least-squares assignment by linear_sum_assignment (permutation)
    lasso                 the affine map with an L1 penalty on its weights, by FISTA on the
                          statistics (sparse-N)

A stitch type names its closed form in its registration (plato.stitch.registry); the pass
over the data that gathers the statistics is plato.stitch.statistics. Weights are written in
float64 arithmetic and cast once, into the layers' own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plato.errors import PlatoError


@dataclass
class LinearFit:
    """The ridge least-squares fit Y ~ X W + b and the moments it was solved from, on design
    rows X (N, d_in) and targets Y (N, d_out); float64."""

    weight: torch.Tensor  # (d_in, d_out)
    bias: torch.Tensor  # (d_out,)
    x_mean: torch.Tensor  # (d_in,)
    x_cov: torch.Tensor  # (d_in, d_in)
    cross_cov: torch.Tensor  # (d_in, d_out): Cov(X, Y)
    y_mean: torch.Tensor  # (d_out,)
    train_mse: float  # per output, on the rows the statistics hold
    y_var: torch.Tensor | None = None  # (d_out,): each target's variance


def columns(rows: torch.Tensor) -> torch.Tensor:
    """(N, d) rows -> (d, N) float64 columns, one copy. Products of the column layout run
    several times faster than the same products of tall (N, d) rows."""
    return torch.empty(rows.shape[1], rows.shape[0], dtype=torch.float64,
                       device=rows.device).copy_(rows.T)


class LstsqStats:
    """Streaming float64 sufficient statistics of design rows X and targets Y."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = self.sy2 = None
        self.syy = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add rows x (N, d_in) and targets y (N, d_out)."""
        xt, yt = columns(x), columns(y)
        self.add_x(xt)
        self.add_y(yt)
        self.add_cross(xt, yt)

    def add_x(self, xt: torch.Tensor) -> None:
        sx, sxx = xt.sum(1), xt @ xt.T
        self.sx, self.sxx = (sx, sxx) if self.sx is None else (self.sx + sx, self.sxx + sxx)
        self.n += xt.shape[1]

    def add_y(self, yt: torch.Tensor) -> None:
        flat = yt.reshape(-1)
        sy, syy, sy2 = yt.sum(1), flat @ flat, (yt * yt).sum(1)
        self.sy, self.syy, self.sy2 = (sy, syy, sy2) if self.sy is None else (
            self.sy + sy, self.syy + syy, self.sy2 + sy2)

    def add_cross(self, xt: torch.Tensor, yt: torch.Tensor) -> None:
        sxy = xt @ yt.T
        self.sxy = sxy if self.sxy is None else self.sxy + sxy

    def with_parts(self, x_part: LstsqStats, y_part: LstsqStats,
                   repeat: int = 1) -> LstsqStats:
        """This cross term completed by shared X statistics (of rows each repeated `repeat`
        times) and shared Y statistics."""
        self.n, self.sx, self.sxx = x_part.n * repeat, x_part.sx * repeat, x_part.sxx * repeat
        self.sy, self.syy, self.sy2 = y_part.sy, y_part.syy, y_part.sy2
        return self

    def solve(self, ridge: float) -> LinearFit:
        """The ridge regression Y ~ X W + b, the ridge `ridge` times the mean input variance."""
        mu, cov, cross, mu_y = self._moments()
        d = len(mu)
        lam = ridge * torch.trace(cov) / d
        w = torch.linalg.solve(cov + lam * torch.eye(d, dtype=cov.dtype, device=cov.device),
                               cross)
        return self._fit(w, mu, cov, cross, mu_y)

    def _moments(self) -> tuple[torch.Tensor, ...]:
        """Mean of X, Cov(X), Cov(X, Y), mean of Y."""
        n = self.n
        mu, mu_y = self.sx / n, self.sy / n
        return (mu, self.sxx / n - torch.outer(mu, mu), self.sxy / n - torch.outer(mu, mu_y),
                mu_y)

    def _fit(self, w, mu, cov, cross, mu_y) -> LinearFit:
        """The fit of the map W (the bias from the means) with its train MSE from the
        statistics: tr(Cyy) - 2 tr(W^T Cxy) + tr(W^T Cxx W), per output."""
        n = self.n
        tr_cyy = self.syy / n - mu_y @ mu_y
        mse = (tr_cyy - 2 * (w * cross).sum() + (w * (cov @ w)).sum()) / len(mu_y)
        return LinearFit(w, mu_y - mu @ w, mu, cov, cross, mu_y, float(mse),
                         self.sy2 / n - mu_y * mu_y)

    def translation(self, translator: str, ridge: float) -> LinearFit:
        """A training-free translation (Maiorca et al. 2023) as the affine map it amounts
        to: each side standardised by its own mean and standard deviation per unit, then
        `linear` (ridge least squares, no intercept: both sides are centred) or `orthogonal`
        (U V^T of the standardised cross-covariance: Procrustes, the narrower side
        zero-padded, no scale), then the receiver's scale and mean restored:
        y = mean_y + sd_y * (((x - mean_x) / sd_x) R), i.e. W = diag(1 / sd_x) R diag(sd_y)."""
        mu, cov, cross, mu_y = self._moments()
        sd_x = torch.diagonal(cov).clamp_min(0).sqrt().clamp_min(1e-12)
        sd_y = (self.sy2 / self.n - mu_y * mu_y).clamp_min(0).sqrt()
        standard = cross / sd_x[:, None] / sd_y.clamp_min(1e-12)[None]
        if translator == "orthogonal":
            u, _, vh = torch.linalg.svd(standard, full_matrices=False)
            r = u @ vh
        else:
            corr = cov / sd_x[:, None] / sd_x[None]
            d = len(sd_x)
            r = torch.linalg.solve(corr + ridge * torch.eye(d, dtype=corr.dtype,
                                                            device=corr.device), standard)
        return self._fit(r / sd_x[:, None] * sd_y[None], mu, cov, cross, mu_y)


# ---------------------------------------------------------------- writing weights

@torch.no_grad()
def write_linear(layer: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> None:
    """Set a Linear or conv layer to rows @ w + b; w is (d_in, d_out) in design-row order."""
    weight = w.T.to(layer.weight.dtype)  # (d_out, d_in)
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    if layer.bias is not None:
        layer.bias.copy_(b.to(layer.bias.dtype) if b is not None else 0)


@torch.no_grad()
def write_batchnorm(bn: nn.Module, mean, var, weight, bias) -> None:
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))
    bn.weight.copy_(weight.to(bn.weight.dtype))
    bn.bias.copy_(bias.to(bn.bias.dtype))


def linear_layers(stitch_map: nn.Module) -> list[nn.Module]:
    """The map's Linear and conv layers, in order."""
    return [m for m in stitch_map.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


# ---------------------------------------------------------------- the closed forms

def affine(stitch_map: nn.Module, fit: LinearFit) -> None:
    """A map of one linear layer computes X W + b."""
    layers = linear_layers(stitch_map)
    if len(layers) != 1:
        raise PlatoError(f"the affine closed form needs a map of one linear layer, not "
                         f"{len(layers)}")
    write_linear(layers[0], fit.weight.double(), fit.bias.double())


@torch.no_grad()
def standardised_affine(stitch_map: nn.Module, fit: LinearFit) -> None:
    """BatchNorm, linear, BatchNorm computing X W + b. The BatchNorms are set so that the
    first standardises its input and the second undoes its own normalisation, in train and
    eval mode alike, so a task phase can start from the closed form."""
    bn1, lin, bn2 = stitch_map
    w, b = fit.weight.double(), fit.bias.double()
    mu, cov = fit.x_mean.double(), fit.x_cov.double()
    mean_y = mu @ w + b  # mean of the fitted values
    sd = torch.sqrt(torch.diagonal(cov) + bn1.eps)
    write_batchnorm(bn1, mean=mu, var=torch.diagonal(cov), weight=torch.ones_like(sd),
                    bias=torch.zeros_like(sd))
    # x @ w + b == ((x - mu) / sd) @ (sd * w) + mean_y
    write_linear(lin, sd[:, None] * w, mean_y)
    var_y = torch.einsum("io,ij,jo->o", w, cov, w)  # diag(w^T cov w)
    sd_y = torch.sqrt(var_y + bn2.eps)
    write_batchnorm(bn2, mean=mean_y, var=var_y, weight=sd_y, bias=mean_y)


@torch.no_grad()
def reduced_rank(stitch_map: nn.Module, fit: LinearFit) -> None:
    """Two linear layers through R units: project the centred fitted values onto their top-R
    principal axes V, y = x w V V^T + (mean_y - mu w V V^T) (reduced-rank regression)."""
    first, second = linear_layers(stitch_map)
    w, b = fit.weight.double(), fit.bias.double()
    mu, cov = fit.x_mean.double(), fit.x_cov.double()
    mean_y = mu @ w + b
    rank = first.weight.shape[0]
    axes = torch.linalg.eigh(w.T @ cov @ w).eigenvectors.flip(1)[:, :rank]  # (d_out, R)
    if axes.shape[1] < rank:  # more rank than outputs: the extra units stay silent
        axes = torch.cat([axes, axes.new_zeros(axes.shape[0], rank - axes.shape[1])], 1)
    write_linear(first, w @ axes, None)
    write_linear(second, axes.T, mean_y - (mu @ w @ axes) @ axes.T)


@torch.no_grad()
def orthogonal(stitch_map: nn.Module, fit: LinearFit) -> None:
    """min over Q (Q^T Q = I on the smaller side), s, b of ||s X Q + b - Y||^2: Q = U V^T from
    the thin SVD U S V^T of Cov(X, Y) (the cross-covariance of the centred rows), s = tr(S) /
    tr(Cov(X)), b = mean(Y) - s mean(X) Q (Schoenemann 1966; with scaling, Gower 1975)."""
    u, sv, vh = torch.linalg.svd(fit.cross_cov.double(), full_matrices=False)
    q = u @ vh  # (d_in, d_out), orthonormal columns (d_in >= d_out) or rows
    total = torch.trace(fit.x_cov.double())
    scale = sv.sum() / total if total > 0 else torch.ones((), dtype=torch.float64)
    stitch_map.set(q, scale, fit.y_mean.double() - scale * fit.x_mean.double() @ q)


def assignment(cross: torch.Tensor, x_var: torch.Tensor) -> torch.Tensor:
    """For each output unit j the input unit i it reads, maximising the variance the pairs
    explain, sum_j Cov(x_i, y_j)^2 / Var(x_i) (the least-squares optimal choice): one-to-one
    where there are at least as many inputs as outputs, else each input at most
    ceil(d_out / d_in) times (a semi-matching: the inputs' columns repeated)."""
    from scipy.optimize import linear_sum_assignment

    d_in, d_out = cross.shape
    explained = (cross.double() ** 2 / x_var.double().clamp_min(1e-12)[:, None]).cpu()
    copies = -(-d_out // d_in)  # ceil
    rows, cols = linear_sum_assignment(explained.repeat(copies, 1).numpy(), maximize=True)
    source = torch.empty(d_out, dtype=torch.long)
    source[torch.as_tensor(cols)] = torch.as_tensor(rows) % d_in
    return source


@torch.no_grad()
def unit_matching(stitch_map: nn.Module, fit: LinearFit) -> None:
    """Each output unit j reads the input unit i = source[j] chosen by `assignment`, with the
    least-squares scale Cov(x_i, y_j) / Var(x_i) and bias."""
    x_var = torch.diagonal(fit.x_cov.double())
    cross = fit.cross_cov.double()
    source = assignment(cross, x_var).to(cross.device)
    outputs = torch.arange(cross.shape[1], device=cross.device)
    scale = cross[source, outputs] / x_var[source].clamp_min(1e-12)
    stitch_map.set(source, scale, fit.y_mean.double() - scale * fit.x_mean.double()[source])


LASSO_STEPS = 100_000  # FISTA iterations at most (a well-posed fit takes hundreds)
LASSO_TOLERANCE = 1e-10  # optimality: subgradient violation, relative to the largest |Cov(X, Y)|


@torch.no_grad()
def lasso(stitch_map: nn.Module, fit: LinearFit) -> None:
    """min over W, b of the mean squared error of X W + b against Y per output, halved, plus
    `strength` * sum |W| (not the bias): on centred rows, 1/2 W^T Cov(X) W - Cov(X, Y)^T W
    summed over outputs, solved by FISTA with adaptive restart (Beck & Teboulle 2009;
    O'Donoghue & Candes 2015) from the statistics until the optimality conditions hold; the
    bias makes the means agree."""
    layer = linear_layers(stitch_map)[0]
    strength = stitch_map.strength
    cov, cross = fit.x_cov.double(), fit.cross_cov.double()
    step = 1.0 / max(float(torch.linalg.eigvalsh(cov)[-1]), 1e-300)  # 1 / Lipschitz constant
    tolerance = LASSO_TOLERANCE * max(float(cross.abs().max()), 1e-300)
    w = fit.weight.double().clone()  # the ridge solution: a start near the answer
    momentum, t = w.clone(), 1.0
    for _ in range(LASSO_STEPS):
        new = soft_threshold(momentum - step * (cov @ momentum - cross), step * strength)
        if float(((momentum - new) * (new - w)).sum()) > 0:  # going uphill: restart
            t = 1.0
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = new + (t - 1) / t_next * (new - w)
        w, t = new, t_next
        if _lasso_violation(w, cov @ w - cross, strength) < tolerance:
            break
    write_linear(layer, w, fit.y_mean.double() - fit.x_mean.double() @ w)


def _lasso_violation(w: torch.Tensor, grad: torch.Tensor, strength: float) -> float:
    """How far W is from the lasso's optimality conditions: grad = -strength sign(w) where
    w != 0, |grad| <= strength where w == 0."""
    active = (grad + strength * torch.sign(w)).abs()
    idle = (grad.abs() - strength).clamp_min(0)
    return float(torch.where(w != 0, active, idle).max())


def soft_threshold(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """The L1 penalty's proximal map: each entry moved `threshold` towards zero, or to it."""
    return torch.sign(w) * (w.abs() - threshold).clamp_min(0)
