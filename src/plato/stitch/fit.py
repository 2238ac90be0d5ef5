"""Fitting a stitch: the four objectives.

    task        cross-entropy on the labels through the frozen receiver suffix
    match       MSE (or L1) to the receiver's own activation at its cut point: the
                "autoencoder stitch"
    lstsq       closed-form ridge least squares onto the receiver's activation, from sufficient
                statistics streamed over the training set in float64 (after the resize); no SGD
    lstsq+task  the closed form as the starting point, then the task loss

Every loop fits many stitches at once (`fit_stitches`): the stitches of one sender/receiver
pair read their frozen activations from one `Activations` pass per batch and step in lockstep
over the same batches, so the frozen networks run once per batch, not once per cell. Each cell's
arithmetic is what it would be alone (same batches, same initialisation, same order of
operations; one optimiser over all stitches, which is elementwise), so a grid gives the results
of its cells fitted one by one. For the task loss, the cells sharing a receiver suffix run it
once on their stacked outputs (a GPU: fewer kernel launches; a CPU: larger convolutions), equal
to each cell alone up to rounding (a larger batch's kernels may round differently). On a CPU
the units of a step (a stacked group, or one cell) run in threads, each op on one core
(`plato.stitch.threads`); unstacked, that is bit for bit what each cell gives alone on one core
(with more intra-op threads, a reduction splits differently: equal up to rounding). A cell
that fails (a non-finite loss, a singular system) is dropped and reported; the others go on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from plato.data.datasets import Dataset
from plato.data.loader import AUGMENT_PRESETS, make_loader, memory_format
from plato.errors import PlatoError, TrainingError
from plato.models.fusion import fold_batchnorm
from plato.stitch.activations import CACHE_TIERS, Activations, CachedActivations
from plato.stitch.stitched import StitchedModel
from plato.stitch.threads import CellThreads, cpu_workers
from plato.train import _autocast, autocast_dtype, resolve_device

OBJECTIVES = ("task", "match", "lstsq", "lstsq+task")
# StitchConfig.fast()'s task phase by device type (default: the CPU's); see its docstring.
FAST_TASK = {"cuda": {"epochs": 1, "batch_size": 128}}
FAST_TASK_DEFAULT = {"epochs": 2, "batch_size": 64}


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
    lstsq_examples: int = 0  # the closed form's statistics from a random subset of this many
    #                          training examples (0: all); as the start of lstsq+task, a few
    #                          thousand examples fit the (at most d_in x d_out) map as well
    init: str = "moments"  # task/match start: "moments" (output matches the receiver's
    #                        per-channel mean and std on the first batches) or "default"
    more_epochs: int = 0  # up to this many further epochs, each a fresh cosine cycle from `lr`,
    #                       for the cells whose task loss is still falling (see `improving`)
    improving: float = 0.05  # a cell trains another epoch when the mean loss of the last
    #                          quarter of its latest cycle fell by more than this fraction
    #                          (from the first quarter of the first cycle, else from the last
    #                          quarter of the cycle before)
    augment: str = "none"  # stitches see the data as it is, unless asked otherwise
    precision: str = "fp32"  # or "bf16" autocast for the SGD phase, or "auto": bf16 where the
    #                          device computes it natively (train.native_bf16), else fp32
    channels_last: bool = True  # NHWC activations: faster convolutions (CPU 1.3x, GPU tensor
    #                             cores); the same answers up to rounding
    activation_cache: str = "auto"  # where the frozen activations of later task epochs are
    #                                 kept: "auto" (the device if they fit in a quarter of its
    #                                 free memory, else memory-mapped files under
    #                                 $PLATO_CACHE/activations if they fit in a quarter of that
    #                                 disk, else nowhere), "device", "disk" or "off"; the same
    #                                 results bit for bit whichever
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = (("objective", self.objective, OBJECTIVES),
                  ("optimizer", self.optimizer, ("adam", "sgd")),
                  ("schedule", self.schedule, ("cosine", "constant")),
                  ("match_loss", self.match_loss, ("mse", "l1")),
                  ("init", self.init, ("moments", "default")),
                  ("augment", self.augment, AUGMENT_PRESETS),
                  ("precision", self.precision, ("fp32", "bf16", "auto")),
                  ("activation_cache", self.activation_cache, CACHE_TIERS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise PlatoError(f"stitch {name} '{value}' is not one of {', '.join(allowed)}")
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise PlatoError("stitch epochs must be >= 0, batch_size >= 1 and lr > 0")
        if self.lstsq_examples < 0:
            raise PlatoError("stitch lstsq_examples must be >= 0 (0: every training example)")
        if self.more_epochs < 0 or not 0 <= self.improving < 1:
            raise PlatoError("stitch more_epochs must be >= 0 and improving in [0, 1)")
        if self.epochs == 0 and self.objective in ("task", "match"):
            raise PlatoError(f"objective '{self.objective}' needs at least one epoch")

    @classmethod
    def fast(cls, **overrides) -> StitchConfig:
        """The measured fast default for whole grids (BENCHMARKS.md, issue 6): the closed form
        from 4,096 random training examples, then the task loss with SGD (Nesterov) at lr 0.1
        in one cosine cycle, bf16 where the device computes it natively. On a CPU, 2 epochs of
        batch 64 (~0.9 pts from the naive loop at ~21x its speed; 1 epoch of batch 32 was 1.1
        pts at ~31x); on a GPU, where a step costs kernel launches, not arithmetic, 1 epoch of
        batch 128 (the 1-GPU-hour figure). `more_epochs=3, improving=0` trains the cells whose
        loss still falls up to three epochs more: closer still, at about twice the cost."""
        device = overrides.get("device", "auto")
        try:
            kind = (resolve_device(device) if device == "auto" else torch.device(device)).type
        except (RuntimeError, PlatoError):
            kind = "cpu"  # an unusable device is reported where the config is used
        return cls(**{"objective": "lstsq+task", "optimizer": "sgd", "lr": 0.1,
                      "precision": "auto", "lstsq_examples": 4096,
                      **FAST_TASK.get(kind, FAST_TASK_DEFAULT), **overrides})

    @property
    def sgd_epochs(self) -> int:
        return 0 if self.objective == "lstsq" else self.epochs

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitInfo:
    loss: float  # the objective's final training loss (lstsq: the closed-form train MSE)
    epochs: int
    seconds: float  # this cell's share of the shared passes
    history: list[dict] = field(default_factory=list)


def fit_stitch(model: StitchedModel, dataset: Dataset, config: StitchConfig | None = None,
               progress: bool = False) -> FitInfo:
    """Fit `model.stitch` in place; the frozen parts never change. Raises if it fails."""
    outcome = fit_stitches([model], dataset, config, progress=progress)[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def fit_stitches(models: Sequence[StitchedModel], dataset: Dataset,
                 config: StitchConfig | None = None, senders: Activations | None = None,
                 receivers: Activations | None = None,
                 progress: bool = False) -> list[FitInfo | PlatoError]:
    """Fit every model's stitch with one pass of the frozen networks per batch.

    `senders` / `receivers` give the activations at every point the models cut at (default:
    the models' own prefixes). Returns, per model, its FitInfo or the error that stopped it.
    """
    config = config or StitchConfig()
    device = resolve_device(config.device)
    layout = memory_format(config.channels_last)
    for m in models:
        m.to(device, memory_format=layout)
    senders = (senders or Activations.senders(models)).to(device, layout)
    receivers = (receivers or Activations.receivers(models)).to(device, layout)
    start = time.perf_counter()
    cells = [_Cell(m) for m in models]
    if config.objective in ("lstsq", "lstsq+task"):
        _fit_lstsq(cells, dataset, config, device, senders, receivers)
    if config.objective in ("task", "match") and config.init == "moments":
        _init_moments(cells, dataset, config, device, senders, receivers)
    if config.sgd_epochs:
        _fit_sgd(cells, dataset, config, device, senders, receivers, progress)
    share = (time.perf_counter() - start) / max(1, len(cells))
    return [c.error if c.error is not None else
            FitInfo(loss=c.history[-1]["loss"], epochs=c.sgd_epochs, seconds=share,
                    history=c.history) for c in cells]


class _Cell:
    """One stitch being fitted: its model, history, and the error that stopped it, if any."""

    def __init__(self, model: StitchedModel) -> None:
        self.model = model
        self.s_name, self.r_name = model.sender_point.name, model.receiver_point.name
        self.history: list[dict] = []
        self.error: PlatoError | None = None

    @property
    def alive(self) -> bool:
        return self.error is None

    @property
    def sgd_epochs(self) -> int:
        return sum(1 for h in self.history if "epoch" in h)


def _alive(cells: list[_Cell]) -> list[_Cell]:
    return [c for c in cells if c.alive]


# --------------------------------------------------------------------------------------------
# Closed form
# --------------------------------------------------------------------------------------------

def _columns(rows: torch.Tensor) -> torch.Tensor:
    """(N, d) rows -> (d, N) float64 columns, one copy. Products of the column layout run
    several times faster than the same products of tall (N, d) rows."""
    return torch.empty(rows.shape[1], rows.shape[0], dtype=torch.float64,
                       device=rows.device).copy_(rows.T)


class LstsqStats:
    """Streaming float64 sufficient statistics of design rows X and targets Y."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = None
        self.syy = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add rows x (N, d_in) and targets y (N, d_out)."""
        xt, yt = _columns(x), _columns(y)
        self.add_x(xt)
        self.add_y(yt)
        self.add_cross(xt, yt)

    def add_x(self, xt: torch.Tensor) -> None:
        sx, sxx = xt.sum(1), xt @ xt.T
        self.sx, self.sxx = (sx, sxx) if self.sx is None else (self.sx + sx, self.sxx + sxx)
        self.n += xt.shape[1]

    def add_y(self, yt: torch.Tensor) -> None:
        flat = yt.reshape(-1)
        sy, syy = yt.sum(1), flat @ flat
        self.sy, self.syy = (sy, syy) if self.sy is None else (self.sy + sy, self.syy + syy)

    def add_cross(self, xt: torch.Tensor, yt: torch.Tensor) -> None:
        sxy = xt @ yt.T
        self.sxy = sxy if self.sxy is None else self.sxy + sxy

    def with_parts(self, x_part: LstsqStats, y_part: LstsqStats,
                   repeat: int = 1) -> LstsqStats:
        """This cross term completed by shared X statistics (of rows each repeated `repeat`
        times) and shared Y statistics."""
        self.n, self.sx, self.sxx = x_part.n * repeat, x_part.sx * repeat, x_part.sxx * repeat
        self.sy, self.syy = y_part.sy, y_part.syy
        return self

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


def _block_sums(t: torch.Tensor, k: int) -> torch.Tensor:
    """Sums over k x k blocks in float64: (B, C, H, W) -> (B, C, H/k, W/k)."""
    return F.avg_pool2d(t.double(), k) * (k * k)


@torch.no_grad()
def _fit_lstsq(cells: list[_Cell], dataset: Dataset, config: StitchConfig,
               device: torch.device, senders: Activations, receivers: Activations) -> None:
    for c in cells:  # before the pass over the data, not after
        try:
            c.model.stitch.require_linear()
        except PlatoError as e:
            c.error = e
    live = _alive(cells)
    if not live:
        return
    if 0 < config.lstsq_examples < len(dataset.train):
        dataset = dataset.subset(train=config.lstsq_examples, seed=config.seed)
    loader = make_loader(dataset, "train", config.batch_size, device=device, seed=config.seed,
                         channels_last=config.channels_last)
    # Cells share statistics: X's by (sender point, design), Y's by receiver point; only the
    # cross products are per cell. Where the design repeats each sender row in a k x k block
    # (an integer upsampling), X'X is k^2 times that of the sender's own rows and X'Y pairs
    # those rows with the targets summed over each block: the same sums, k^2 times fewer rows.
    # Per cell: the key of its design's X statistics and its replication factor k.
    plans = []
    for c in live:
        k = c.model.stitch.replication
        plans.append(((c.s_name, "coarse" if k > 1 else c.model.stitch.design_key), k))
    x_parts, y_parts = {}, {}
    cross = [LstsqStats() for _ in live]
    for x, _ in loader:
        a, t = senders(x), receivers(x)
        xs, ys = {}, {}
        for c, (dkey, k), st in zip(live, plans, cross, strict=True):
            stitch = c.model.stitch
            if dkey not in xs:
                rows = stitch.coarse_design(a[c.s_name]) if k > 1 else stitch.design(
                    a[c.s_name])
                xs[dkey] = _columns(rows)
                x_parts.setdefault(dkey, LstsqStats()).add_x(xs[dkey])
            if (c.r_name, 1) not in ys:
                ys[(c.r_name, 1)] = _columns(stitch.targets(t[c.r_name]))
                y_parts.setdefault(c.r_name, LstsqStats()).add_y(ys[(c.r_name, 1)])
            if (c.r_name, k) not in ys:
                ys[(c.r_name, k)] = _columns(stitch.targets(_block_sums(t[c.r_name], k)))
            st.add_cross(xs[dkey], ys[(c.r_name, k)])
    stats = [st.with_parts(x_parts[dkey], y_parts[c.r_name], repeat=k * k)
             for c, (dkey, k), st in zip(live, plans, cross, strict=True)]
    for c, st in zip(live, stats, strict=True):
        try:
            w, b, mu, cov, mse = st.solve(config.ridge)
        except RuntimeError as e:  # a singular system: this cell fails, the others go on
            c.error = PlatoError(f"the least-squares system could not be solved: {e}")
            continue
        if not math.isfinite(mse) or not bool(torch.isfinite(w).all()):
            c.error = TrainingError("the least-squares fit is non-finite (non-finite "
                                    "activations at the sender or receiver point)")
            continue
        c.model.stitch.set_affine(w, b, mu, cov)
        c.history.append({"phase": "lstsq", "loss": mse})


@torch.no_grad()
def _init_moments(cells: list[_Cell], dataset: Dataset, config: StitchConfig,
                  device: torch.device, senders: Activations, receivers: Activations,
                  examples: int = 1024) -> None:
    """Start each stitch with the receiver's per-channel output statistics (first examples)."""
    loader = make_loader(dataset, "train", min(config.batch_size, examples), device=device,
                         channels_last=config.channels_last)
    xs, seen = [], 0
    for x, _ in loader:
        xs.append(x)
        seen += len(x)
        if seen >= examples:
            break
    x = torch.cat(xs)
    a, t = senders(x), receivers(x)
    for c in _alive(cells):
        c.model.stitch.train()
        c.model.stitch.match_output_moments(a[c.s_name], t[c.r_name])


# --------------------------------------------------------------------------------------------
# Gradient descent: task, match, and the task phase of lstsq+task
# --------------------------------------------------------------------------------------------

class _Optimiser:
    """One optimiser and schedule over the stitches of all cells, with each cell's loss kept
    on the device. Adam and SGD update every parameter elementwise from its own gradient and
    the shared step count, so one optimiser steps each cell exactly as its own would; a
    dropped cell's parameters get no gradient and are skipped. `total` steps make one cosine
    cycle; each cell's mean loss over its first and last quarter is kept (`quarters`)."""

    def __init__(self, cells: list[_Cell], config: StitchConfig, total: int, device) -> None:
        params = [p for c in cells for p in c.model.trainable_parameters()]
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                                       weight_decay=config.weight_decay)
        if config.schedule == "cosine":
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        else:
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: 1.0)
        self.device = device
        self.slot = {id(c): i for i, c in enumerate(cells)}
        self.size = len(cells)
        self.total, self.taken = total, 0
        # loss sums and example counts of the cycle's first and last quarter of steps
        self.head = torch.zeros(self.size, device=device)
        self.tail = torch.zeros(self.size, device=device)
        self.head_seen = self.tail_seen = 0
        self.new_epoch()

    def new_epoch(self) -> None:
        self.loss_sum = torch.zeros(self.size, device=self.device)
        # The first step whose loss was non-finite, kept on the device: no per-step sync.
        self.first_bad = torch.full((self.size,), -1, device=self.device, dtype=torch.int64)
        self.seen = 0

    def slots(self, cells: list[_Cell]) -> torch.Tensor:
        return torch.tensor([self.slot[id(c)] for c in cells], device=self.device)

    def step(self, losses: torch.Tensor, slots: torch.Tensor, step: int, batch: int) -> None:
        """One step of every live cell, whose gradients the caller has just computed, from its
        mean loss on the batch (`losses[i]` for the cell in `slots[i]`)."""
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        losses = losses.detach().float()
        bad = self.first_bad[slots]
        self.first_bad[slots] = torch.where(~torch.isfinite(losses) & (bad < 0), step, bad)
        self.loss_sum[slots] += losses * batch
        self.seen += batch
        self.taken += 1
        quarter = max(1, self.total // 4)
        if self.taken <= quarter:
            self.head[slots] += losses * batch
            self.head_seen += batch
        if self.taken > self.total - quarter:
            self.tail[slots] += losses * batch
            self.tail_seen += batch

    def mean_loss(self, cell: _Cell) -> float:
        return self.loss_sum[self.slot[id(cell)]].item() / self.seen

    def quarters(self, cell: _Cell) -> tuple[float, float]:
        """The cell's mean loss over the first and the last quarter of the cycle's steps."""
        i = self.slot[id(cell)]
        return (self.head[i].item() / max(1, self.head_seen),
                self.tail[i].item() / max(1, self.tail_seen))


# Examples per call of a shared receiver suffix, by device: bounds the memory of stacked cells.
# Stacking pays where the task phase is bound by kernel launches (a GPU: 3-5x fewer per step)
# and, on a CPU, where each stacked group runs in its own thread on one core (~7% off the task
# phase against cells one by one in threads; stacked with every core per op: no gain).
SUFFIX_EXAMPLES = {"cuda": 4096, "cpu": 4096}


def _cell_losses(cells: list[_Cell], objective: str, match_loss: str, a: dict,
                 t: dict | None, y: torch.Tensor,
                 suffixes: dict[int, nn.Module] | None = None) -> torch.Tensor:
    """Each cell's mean loss on the batch, (len(cells),). `suffixes` maps a receiver suffix (by
    id) to the module that computes it in training (its BatchNorm-folded copy).

    For the task loss, cells that share a receiver suffix (the same receiver cut point) run it
    once on their stitch outputs stacked along the batch: the frozen suffix is in eval mode, so
    each example's logits are its own, and one call replaces many small ones (on a GPU, the
    task phase is bound by the number of kernel launches)."""
    if objective == "match":
        fn = F.mse_loss if match_loss == "mse" else F.l1_loss
        return torch.stack([fn(c.model.stitch(a[c.s_name]).float(), t[c.r_name].float())
                            for c in cells])
    losses: list[torch.Tensor | None] = [None] * len(cells)
    shared: dict[int, list[int]] = {}
    for i, c in enumerate(cells):
        shared.setdefault(id(c.model.receiver_suffix), []).append(i)
    per_call = max(1, SUFFIX_EXAMPLES.get(y.device.type, 0) // len(y))
    for members in shared.values():
        for start in range(0, len(members), per_call):
            chunk = members[start:start + per_call]
            outs = [cells[i].model.stitch(a[cells[i].s_name]) for i in chunk]
            stacked = outs[0] if len(chunk) == 1 else torch.cat(outs)  # (len(chunk) * B, ...)
            suffix = cells[chunk[0]].model.receiver_suffix
            logits = (suffixes or {}).get(id(suffix), suffix)(stacked)
            targets = y if len(chunk) == 1 else y.repeat(len(chunk))
            per_example = F.cross_entropy(logits.float(), targets, reduction="none")
            for i, loss in zip(chunk, per_example.view(len(chunk), -1).mean(1), strict=True):
                losses[i] = loss
    return torch.stack(losses)


def _drop_non_finite(live: list[_Cell], slots: torch.Tensor, optim: _Optimiser,
                     epoch: int) -> tuple[list[_Cell], torch.Tensor]:
    """Fail the cells whose loss went non-finite; the cells still live and their slots."""
    bad = optim.first_bad[slots].tolist()  # one sync
    for c, step in zip(live, bad, strict=True):
        if step >= 0:
            c.error = TrainingError(
                f"the stitch loss became non-finite at step {step} (epoch {epoch}); "
                "lower the learning rate or use fp32. Nothing was saved.")
    if max(bad, default=-1) < 0:
        return live, slots
    live = _alive(live)
    return live, optim.slots(live)


def _units(live: list[_Cell], stacking: bool) -> list[list[_Cell]]:
    """The cells grouped as they run: by shared receiver suffix when stacking, else one by one."""
    if not stacking:
        return [[c] for c in live]
    by_suffix: dict[int, list[_Cell]] = {}
    for c in live:
        by_suffix.setdefault(id(c.model.receiver_suffix), []).append(c)
    return list(by_suffix.values())


def _frozen(source: Activations | CachedActivations, x: torch.Tensor,
            indices: torch.Tensor) -> dict[str, torch.Tensor]:
    return source(x, indices) if isinstance(source, CachedActivations) else source(x)


def _folded(suffix: nn.Module, fused: dict, dtype: torch.dtype | None) -> nn.Module:
    return fold_batchnorm(suffix, fused, dtype) if isinstance(suffix, fx.GraphModule) else suffix


def _fit_sgd(cells: list[_Cell], dataset: Dataset, config: StitchConfig, device: torch.device,
             senders: Activations, receivers: Activations, progress: bool = False) -> None:
    """Gradient descent in cycles: the first is `epochs` epochs under one schedule; then, up to
    `more_epochs` times, the cells whose loss still fell by more than `improving` train one
    more epoch, a fresh cycle (cells whose start is far from the task optimum, such as a poor
    closed form, get the steps they need; the others stop)."""
    from tqdm import tqdm

    objective = "task" if config.objective == "lstsq+task" else config.objective
    loader = make_loader(dataset, "train", config.batch_size, device=device, train=True,
                         augment=config.augment, seed=config.seed,
                         channels_last=config.channels_last)
    live = _alive(cells)
    if not live:
        return
    # The frozen suffixes with their BatchNorms folded into the convs: the same function, less
    # work per step; the fused layers are shared by the suffixes of one network, for this fit.
    # Under bf16 autocast, the fused layers are stored in bf16 (no per-step weight casts).
    fused: dict = {}
    dtype = autocast_dtype(device, config.precision)
    suffixes = {} if objective != "task" else {
        id(c.model.receiver_suffix): _folded(c.model.receiver_suffix, fused, dtype)
        for c in live}
    cycles = [config.sgd_epochs] + [1] * config.more_epochs
    # Over several epochs of unaugmented data, the frozen activations of each example are kept
    # after its first pass (where they fit: the device, else disk): later epochs read them.
    if sum(cycles) > 1 and not loader.augment.enabled and config.activation_cache != "off":
        senders = CachedActivations(senders, loader.num_examples, config.activation_cache)
        if objective == "match":
            receivers = CachedActivations(receivers, loader.num_examples,
                                          config.activation_cache)
    # On a CPU, the units of a step run in threads (plato.stitch.threads): for the task loss the
    # cells that share a receiver suffix stack their outputs through it, a unit; else each cell
    # is one. A GPU runs all live cells in one call per shared suffix, no threads.
    stacking = objective == "task" and bool(SUFFIX_EXAMPLES.get(device.type))
    units, units_of = _units(live, stacking), live  # (units_of: the live cells units came from)
    workers = cpu_workers(device, len(units))
    threads = CellThreads(workers) if workers > 1 else None

    def loss_and_grad(unit: list[_Cell], a: dict, t: dict | None,
                      y: torch.Tensor) -> torch.Tensor:
        with _autocast(device, config.precision):
            losses = _cell_losses(unit, objective, config.match_loss, a, t, y, suffixes)
        losses.sum().backward()  # each cell's own gradient: no shared parameter
        return losses.detach()

    step = epoch = 0
    bar = tqdm(total=config.sgd_epochs * len(loader), desc=f"stitch ({objective})",
               unit="step", leave=False, disable=not progress, file=sys.stderr)
    for n, cycle_epochs in enumerate(cycles):
        if n:  # a further cycle, for the cells still improving
            bar.total += len(loader)
            bar.refresh()
        optim = _Optimiser(live, config, cycle_epochs * len(loader), device)
        slots = optim.slots(live)
        for _ in range(cycle_epochs):
            epoch += 1
            for c in live:
                c.model.train()
            optim.new_epoch()
            for x, y in loader:
                step += 1
                with _autocast(device, config.precision):
                    a = _frozen(senders, x, loader.indices)
                    t = _frozen(receivers, x, loader.indices) if objective == "match" else None
                if threads is not None:
                    if units_of is not live:
                        units, units_of = _units(live, stacking), live
                    found = threads.map(lambda u, a=a, t=t, y=y: loss_and_grad(u, a, t, y),
                                        units)
                    loss_of = {id(c): loss for unit, unit_losses in zip(units, found, strict=True)
                               for c, loss in zip(unit, unit_losses, strict=True)}
                    losses = torch.stack([loss_of[id(c)] for c in live])
                else:
                    with _autocast(device, config.precision):
                        losses = _cell_losses(live, objective, config.match_loss, a, t, y,
                                              suffixes)
                    losses.sum().backward()  # each cell's own gradient: no shared parameter
                optim.step(losses, slots, step, len(y))
                if step % 25 == 0:
                    live, slots = _drop_non_finite(live, slots, optim, epoch)
                    if live:
                        bar.set_postfix(epoch=epoch, cells=len(live),
                                        loss=f"{optim.mean_loss(live[0]):.4f}")
                bar.update(1)
                if not live:
                    break
            if live:
                live, slots = _drop_non_finite(live, slots, optim, epoch)
            if not live:
                break
            for c in live:
                c.history.append({"phase": objective, "epoch": epoch,
                                  "loss": optim.mean_loss(c)})
        still = []
        for c in live:
            head, tail = optim.quarters(c)
            # compared with the previous cycle's tail, or with this (first) cycle's head
            before = next((h["tail_loss"] for h in reversed(c.history) if "tail_loss" in h),
                          head)
            c.history[-1].update(head_loss=head, tail_loss=tail)
            if tail < (1 - config.improving) * before:
                still.append(c)
        live = still
        if not live:
            break
    bar.close()
    if threads is not None:
        threads.close()
    for c in cells:
        c.model.eval()
