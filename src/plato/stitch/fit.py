"""Fitting a stitch: the four objectives.

    task        cross-entropy on the labels through the frozen receiver suffix
    match       MSE (or L1) to the receiver's own activation at its cut point: the
                "autoencoder stitch"
    lstsq       closed-form ridge least squares onto the receiver's activation, from sufficient
                statistics streamed over the training set in float64 (after the resize); no SGD
    lstsq+task  the closed form as the starting point, then the task loss

The loops take the stitch and the frozen parts separately, so that a later sweep can feed many
stitches from one sender forward pass.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from plato.data.datasets import Dataset
from plato.data.loader import AUGMENT_PRESETS, make_loader
from plato.errors import PlatoError
from plato.stitch.stitched import StitchedModel
from plato.train import _autocast, _check_finite, resolve_device

OBJECTIVES = ("task", "match", "lstsq", "lstsq+task")


@dataclass
class StitchConfig:
    objective: str = "task"  # task | match | lstsq | lstsq+task
    epochs: int = 3  # SGD epochs (lstsq uses one statistics pass and no SGD)
    batch_size: int = 128
    optimizer: str = "adam"  # "adam" or "sgd" (Nesterov, momentum 0.9)
    lr: float = 1e-3
    schedule: str = "cosine"  # "cosine" (no warmup) or "constant"
    weight_decay: float = 0.0
    match_loss: str = "mse"  # "mse" or "l1", for `match`
    ridge: float = 1e-4  # lstsq ridge, relative to the mean input variance
    init: str = "moments"  # task/match start: "moments" (output matches the receiver's
    #                        per-channel mean and std on the first batches) or "default"
    augment: str = "none"  # stitches see the data as it is, unless asked otherwise
    precision: str = "fp32"  # or "bf16" autocast for the SGD phase
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = (("objective", self.objective, OBJECTIVES),
                  ("optimizer", self.optimizer, ("adam", "sgd")),
                  ("schedule", self.schedule, ("cosine", "constant")),
                  ("match_loss", self.match_loss, ("mse", "l1")),
                  ("init", self.init, ("moments", "default")),
                  ("augment", self.augment, AUGMENT_PRESETS),
                  ("precision", self.precision, ("fp32", "bf16")))
        for name, value, allowed in checks:
            if value not in allowed:
                raise PlatoError(f"stitch {name} '{value}' is not one of {', '.join(allowed)}")
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise PlatoError("stitch epochs must be >= 0, batch_size >= 1 and lr > 0")
        if self.epochs == 0 and self.objective in ("task", "match"):
            raise PlatoError(f"objective '{self.objective}' needs at least one epoch")

    @property
    def sgd_epochs(self) -> int:
        return 0 if self.objective == "lstsq" else self.epochs

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitInfo:
    loss: float  # the objective's final training loss (lstsq: the closed-form train MSE)
    epochs: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def fit_stitch(model: StitchedModel, dataset: Dataset, config: StitchConfig | None = None,
               progress: bool = False) -> FitInfo:
    """Fit `model.stitch` in place; the frozen parts never change."""
    config = config or StitchConfig()
    device = resolve_device(config.device)
    model.to(device)
    start = time.perf_counter()
    loss, history = float("nan"), []
    if config.objective in ("lstsq", "lstsq+task"):
        loss = fit_lstsq(model, dataset, config, device)
        history.append({"phase": "lstsq", "loss": loss})
    if config.objective in ("task", "match") and config.init == "moments":
        init_moments(model, dataset, config, device)
    if config.sgd_epochs:
        history += fit_sgd(model, dataset, config, device, progress)
        loss = history[-1]["loss"]
    return FitInfo(loss=loss, epochs=config.sgd_epochs, seconds=time.perf_counter() - start,
                   history=history)


# --------------------------------------------------------------------------------------------
# Closed form
# --------------------------------------------------------------------------------------------

class LstsqStats:
    """Streaming float64 sufficient statistics of design rows X and targets Y."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = None
        self.syy = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.double(), y.double()  # (N, d_in), (N, d_out)
        if self.sx is None:
            self.sx, self.sy = x.sum(0), y.sum(0)
            self.sxx, self.sxy = x.T @ x, x.T @ y
            self.syy = (y * y).sum()
        else:
            self.sx += x.sum(0)
            self.sy += y.sum(0)
            self.sxx += x.T @ x
            self.sxy += x.T @ y
            self.syy += (y * y).sum()
        self.n += len(x)

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                            torch.Tensor, float]:
        """(W, b, x_mean, x_cov, train_mse) of the ridge regression Y ~ X W + b."""
        n = self.n
        mu, mu_y = self.sx / n, self.sy / n
        cov = self.sxx / n - torch.outer(mu, mu)
        cross = self.sxy / n - torch.outer(mu, mu_y)
        d = len(mu)
        lam = ridge * torch.trace(cov) / d
        w = torch.linalg.solve(cov + lam * torch.eye(d, dtype=cov.dtype, device=cov.device),
                               cross)
        b = mu_y - mu @ w
        # Train MSE from the statistics: tr(Cyy) - 2 tr(W^T Cxy) + tr(W^T Cxx W), per output.
        tr_cyy = self.syy / n - mu_y @ mu_y
        mse = (tr_cyy - 2 * (w * cross).sum() + (w * (cov @ w)).sum()) / len(mu_y)
        return w, b, mu, cov, float(mse)


@torch.no_grad()
def fit_lstsq(model: StitchedModel, dataset: Dataset, config: StitchConfig,
              device: torch.device) -> float:
    model.stitch.require_linear()  # before the pass over the data, not after
    loader = make_loader(dataset, "train", config.batch_size, device=device, seed=config.seed)
    stats = LstsqStats()
    for x, _ in loader:
        a = model.sender_activation(x)
        t = model.receiver_activation(x)
        stats.update(model.stitch.design(a), model.stitch.targets(t))
    w, b, mu, cov, mse = stats.solve(config.ridge)
    model.stitch.set_affine(w, b, mu, cov)
    return mse


@torch.no_grad()
def init_moments(model: StitchedModel, dataset: Dataset, config: StitchConfig,
                 device: torch.device, examples: int = 1024) -> None:
    """Start the stitch with the receiver's per-channel output statistics (first examples)."""
    loader = make_loader(dataset, "train", min(config.batch_size, examples), device=device)
    xs, seen = [], 0
    for x, _ in loader:
        xs.append(x)
        seen += len(x)
        if seen >= examples:
            break
    x = torch.cat(xs)
    model.stitch.train()
    model.stitch.match_output_moments(model.sender_activation(x), model.receiver_activation(x))


# --------------------------------------------------------------------------------------------
# Gradient descent: task, match, and the task phase of lstsq+task
# --------------------------------------------------------------------------------------------

def _loss(model: StitchedModel, objective: str, match_loss: str, x, y) -> torch.Tensor:
    out = model.stitch(model.sender_activation(x))
    if objective == "match":
        target = model.receiver_activation(x)
        fn = F.mse_loss if match_loss == "mse" else F.l1_loss
        return fn(out.float(), target.float())
    return F.cross_entropy(model.receiver_suffix(out).float(), y)


def fit_sgd(model: StitchedModel, dataset: Dataset, config: StitchConfig, device: torch.device,
            progress: bool = False) -> list[dict]:
    from tqdm import tqdm

    objective = "task" if config.objective == "lstsq+task" else config.objective
    loader = make_loader(dataset, "train", config.batch_size, device=device, train=True,
                         augment=config.augment, seed=config.seed)
    params = model.trainable_parameters()
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                              weight_decay=config.weight_decay)
    total = config.sgd_epochs * len(loader)
    if config.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    history, step = [], 0
    bar = tqdm(total=total, desc=f"stitch ({objective})", unit="step", leave=False,
               disable=not progress, file=sys.stderr)
    for epoch in range(1, config.sgd_epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        seen = 0
        for x, y in loader:
            with _autocast(device, config.precision):
                loss = _loss(model, objective, config.match_loss, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            first_bad = torch.where(~torch.isfinite(loss.detach()) & (first_bad < 0), step,
                                    first_bad)
            loss_sum += loss.detach() * len(y)
            seen += len(y)
            if step % 25 == 0:
                _check_finite(first_bad, epoch, "stitch")
                bar.set_postfix(epoch=f"{epoch}/{config.sgd_epochs}",
                                loss=f"{loss_sum.item() / seen:.4f}")
            bar.update(1)
        _check_finite(first_bad, epoch, "stitch")
        history.append({"phase": objective, "epoch": epoch, "loss": loss_sum.item() / seen})
    bar.close()
    model.eval()
    return history
