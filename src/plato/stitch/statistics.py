"""Fitting from streamed statistics of the data, without gradients.

    fit_lstsq     the closed form of `lstsq` (and the start of `lstsq+task`): ridge least
                  squares onto the receiver's activation, from float64 sufficient statistics
                  streamed over the training split (after the resize), written into each
                  stitch by its type's closed form (plato.stitch.closed_form)
    init_moments  the start of `task` and `match`: each stitch's output gets the receiver's
                  per-channel mean and standard deviation on the first training examples

The cells of a grid share statistics: X'X per sender point and design, Y's per receiver point
and target layout (a token receiver's rows with or without its prefix tokens); only the cross
products X'Y are per cell.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from plato.data.datasets import Dataset
from plato.data.loader import make_loader
from plato.errors import PlatoError, TrainingError
from plato.stitch.activations import Activations
from plato.stitch.cell import FitCell, alive
from plato.stitch.closed_form import LstsqStats, columns
from plato.stitch.config import StitchConfig


def _block_sums(t: torch.Tensor, k: int) -> torch.Tensor:
    """Sums over k x k blocks in float64: (B, C, H, W) -> (B, C, H/k, W/k)."""
    return F.avg_pool2d(t.double(), k) * (k * k)


@torch.no_grad()
def fit_lstsq(cells: list[FitCell], dataset: Dataset, config: StitchConfig,
               device: torch.device, senders: Activations, receivers: Activations,
               translate: bool = False) -> None:
    """`translate`: the training-free translation of `config.anchors` examples
    (LstsqStats.translation) instead of the least-squares fit."""
    for c in cells:  # before the pass over the data, not after
        try:
            c.model.stitch.require_linear()
            if translate:
                c.model.stitch.require_affine()
        except PlatoError as e:
            c.error = e
    live = alive(cells)
    if not live:
        return
    examples = config.anchors if translate else config.lstsq_examples
    if 0 < examples < len(dataset.train):
        dataset = dataset.subset(train=examples, seed=config.seed)
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
    # Learned prefix tokens (class_token: learned): their least-squares value is the mean of
    # the receiver's own prefix tokens.
    prefix_sums = {c.r_name: [c.model.stitch.out_tokens.prefix, 0, 0.0] for c in live
                   if c.model.stitch.prefix_mode == "learned"}  # prefix, examples, sum
    for x, _ in loader:
        a, t = senders(x), receivers(x)
        for r_name, sums in prefix_sums.items():
            prefix = t[r_name][:, :sums[0]].double()  # (B, prefix, D)
            sums[1], sums[2] = sums[1] + len(prefix), sums[2] + prefix.sum(0)
        xs, ys = {}, {}
        for c, (dkey, k), st in zip(live, plans, cross, strict=True):
            stitch = c.model.stitch
            if dkey not in xs:
                rows = stitch.coarse_design(a[c.s_name]) if k > 1 else stitch.design(
                    a[c.s_name])
                xs[dkey] = columns(rows)
                x_parts.setdefault(dkey, LstsqStats()).add_x(xs[dkey])
            ykey = (c.r_name, stitch.targets_key)
            if (ykey, 1) not in ys:
                ys[(ykey, 1)] = columns(stitch.targets(t[c.r_name]))
                y_parts.setdefault(ykey, LstsqStats()).add_y(ys[(ykey, 1)])
            if (ykey, k) not in ys:
                ys[(ykey, k)] = columns(stitch.targets(_block_sums(t[c.r_name], k)))
            st.add_cross(xs[dkey], ys[(ykey, k)])
    stats = [st.with_parts(x_parts[dkey], y_parts[(c.r_name, c.model.stitch.targets_key)],
                           repeat=k * k)
             for c, (dkey, k), st in zip(live, plans, cross, strict=True)]
    for c, st in zip(live, stats, strict=True):
        try:
            fit = (st.translation(config.translator, config.ridge) if translate
                   else st.solve(config.ridge))
        except RuntimeError as e:  # a singular system: this cell fails, the others go on
            c.error = PlatoError(f"the least-squares system could not be solved: {e}")
            continue
        if not math.isfinite(fit.train_mse) or not bool(torch.isfinite(fit.weight).all()):
            c.error = TrainingError("the least-squares fit is non-finite (non-finite "
                                    "activations at the sender or receiver point)")
            continue
        c.model.stitch.set_affine(fit)
        if c.model.stitch.prefix_mode == "learned":
            _, count, total = prefix_sums[c.r_name]
            c.model.stitch.prefix_tokens.copy_(total[None] / count)
        c.history.append({"phase": "translate" if translate else "lstsq",
                          "loss": fit.train_mse})


@torch.no_grad()
def init_moments(cells: list[FitCell], dataset: Dataset, config: StitchConfig,
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
    for c in alive(cells):
        c.model.stitch.train()
        c.model.stitch.match_output_moments(a[c.s_name], t[c.r_name])
