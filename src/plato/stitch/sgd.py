"""Gradient descent on many stitches at once: `task`, `match`, and the task phase of
`lstsq+task`.

Budget "epochs": training runs in cycles: the first is `epochs` epochs under one schedule;
then, up to `more_epochs` times, the cells whose loss still fell by more than `improving`
train one more epoch, a fresh cycle (a cell whose start is far from the task optimum gets the
steps it needs; the others stop). Budget "converge": one cycle at a constant learning rate
until a held-out slice of the training split says each cell has stopped improving
(`plato.stopping.StoppingRule`), the rate dropped tenfold at each of the first `decays`
plateaus.
Each cell decides for itself, so a grid still gives each cell its result alone; a cell that
stops leaves the shared passes.

All cells step in lockstep over the same batches, under one optimiser: Adam and SGD update
every parameter elementwise from its own gradient and the shared step count, so each cell
steps exactly as it would under its own; a dropped cell's parameters get no gradient and are
skipped.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.optim.lr_scheduler import LRScheduler

from plato.data.datasets import Dataset, Split
from plato.data.loader import make_loader
from plato.device import autocast, autocast_dtype
from plato.errors import TrainingError
from plato.models.fusion import fold_batchnorm
from plato.stitch.activations import Activations, CachedActivations
from plato.stitch.cell import FitCell, alive
from plato.stitch.config import StitchConfig
from plato.stitch.stitched import head_input
from plato.stitch.threads import CellThreads, InOrder, cell_runner
from plato.stopping import StoppingRule

STACK_EXAMPLES = 4096  # at most this many examples per call of a shared receiver suffix (memory)
TARGETED = ("match", "final")  # losses against the receiver's own activations
DECAY = 0.1  # the converging budget's learning-rate drop at a plateau (`decays` times)
CHECK_EVERY = 25  # steps between looks at the non-finite ledger (each look syncs the device)


def make_optimiser(cells: list[FitCell], config: StitchConfig, total: int,
                   per_cell: bool = False) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """One optimiser over every cell's stitch, and its schedule over `total` steps;
    `per_cell`: each cell's parameters in their own group (its own learning rate), in the
    cells' order."""
    params = ([{"params": list(c.model.trainable_parameters())} for c in cells] if per_cell
              else [p for c in cells for p in c.model.trainable_parameters()])
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                              weight_decay=config.weight_decay)
    if config.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def _proximal_steps(live: list[FitCell], opt: torch.optim.Optimizer) -> None:
    """A penalty's proximal step after the optimiser's (a sparse map's L1: soft-thresholding
    by its learning rate times its strength), for the maps that have one."""
    maps = [c.model.stitch.map for c in live if hasattr(c.model.stitch.map, "proximal")]
    if not maps:
        return
    lr_of = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    for stitch_map in maps:
        stitch_map.proximal(lr_of[id(next(stitch_map.parameters()))])


class LossLedger:
    """Each cell's training loss over one cycle of `total` steps, kept on the device (no host
    synchronisation per step): the epoch's mean, the first non-finite step, and the mean over
    the cycle's first and last quarter of steps (the `improving` rule)."""

    def __init__(self, cells: list[FitCell], total: int, device: torch.device) -> None:
        self.slot = {id(c): i for i, c in enumerate(cells)}
        self.device = device
        self.total, self.taken = total, 0
        self.head = torch.zeros(len(cells), device=device)
        self.tail = torch.zeros(len(cells), device=device)
        self.head_seen = self.tail_seen = 0
        self.new_epoch()

    def new_epoch(self) -> None:
        self.loss_sum = torch.zeros(len(self.slot), device=self.device)
        self.first_bad = torch.full((len(self.slot),), -1, device=self.device,
                                    dtype=torch.int64)
        self.seen = 0

    def slots(self, cells: list[FitCell]) -> torch.Tensor:
        return torch.tensor([self.slot[id(c)] for c in cells], device=self.device)

    def add(self, losses: torch.Tensor, slots: torch.Tensor, step: int, batch: int) -> None:
        """Each cell's mean loss on a batch of `batch` examples: `losses[i]` is the cell's in
        `slots[i]`."""
        losses = losses.float()
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

    def mean(self, cell: FitCell) -> float:
        return self.loss_sum[self.slot[id(cell)]].item() / self.seen

    def quarters(self, cell: FitCell) -> tuple[float, float]:
        """The cell's mean loss over the first and the last quarter of the cycle's steps."""
        i = self.slot[id(cell)]
        return (self.head[i].item() / max(1, self.head_seen),
                self.tail[i].item() / max(1, self.tail_seen))


def cell_losses(cells: list[FitCell], objective: str, match_loss: str, a: dict,
                t: dict | None, y: torch.Tensor, suffixes: dict[int, nn.Module] | None = None,
                stacking: bool = True, label_smoothing: float = 0.0) -> torch.Tensor:
    """Each cell's mean loss on the batch, (len(cells),), from the frozen activations `a`
    (sender points) and `t` (receiver points, for `match`). `suffixes` maps a receiver suffix
    (by id) to the module that computes it in training (its BatchNorm-folded copy).

    With `stacking`, the task loss of cells that share a receiver suffix runs it once on their
    stitch outputs stacked along the batch: the suffix is frozen in eval mode, so each
    example's logits are its own, and one call replaces many small ones."""
    if objective == "match":
        fn = F.mse_loss if match_loss == "mse" else F.l1_loss
        return torch.stack([fn(c.model.stitch(a[c.s_name]).float(), t[c.r_name].float())
                            for c in cells])
    if objective == "final":  # the receiver's pre-logit features, stitched against its own
        fn = F.mse_loss if match_loss == "mse" else F.l1_loss
        own: dict[tuple[int, str], torch.Tensor] = {}  # shared by cells of one suffix and point
        out = []
        for c in cells:
            suffix = c.model.receiver_suffix
            key = (id(suffix), c.r_name)
            if key not in own:
                with torch.no_grad():
                    own[key] = head_input(suffix, t[c.r_name]).float()
            out.append(fn(head_input(suffix, c.model.stitch(a[c.s_name])).float(), own[key]))
        return torch.stack(out)
    losses: list[torch.Tensor | None] = [None] * len(cells)
    shared: dict[int, list[int]] = {}
    for i, c in enumerate(cells):
        shared.setdefault(id(c.model.receiver_suffix), []).append(i)
    per_call = max(1, STACK_EXAMPLES // len(y)) if stacking else 1
    for members in shared.values():
        for start in range(0, len(members), per_call):
            chunk = members[start:start + per_call]
            outs = [cells[i].model.stitch(a[cells[i].s_name]) for i in chunk]
            stacked = outs[0] if len(chunk) == 1 else torch.cat(outs)  # (len(chunk) * B, ...)
            suffix = cells[chunk[0]].model.receiver_suffix
            logits = (suffixes or {}).get(id(suffix), suffix)(stacked)
            targets = y if len(chunk) == 1 else y.repeat(len(chunk))
            per_example = F.cross_entropy(logits.float(), targets, reduction="none",
                                          label_smoothing=label_smoothing)
            for i, loss in zip(chunk, per_example.view(len(chunk), -1).mean(1), strict=True):
                losses[i] = loss
    return torch.stack(losses)


def fit_sgd(cells: list[FitCell], dataset: Dataset, config: StitchConfig,
            device: torch.device, senders: Activations, receivers: Activations,
            progress: bool = False, held: Split | None = None,
            objective: str | None = None) -> None:
    """Train every live cell's stitch: in cycles of epochs (budget "epochs"; the module
    docstring), or until the held-out rule stops it (budget "converge", `held` the examples
    held out of the training split). Each cell's history gets a row per epoch or look, and a
    cell whose loss turns non-finite its error. `objective`: the loss of this stage (default:
    the config's; task after a closed form)."""
    live = alive(cells)
    if not live:
        return
    loop = _Loop(live, dataset, config, device, senders, receivers, progress, objective)
    with loop.runner:
        if config.converges:
            loop.until_converged(live, replace(dataset, train=held))
        else:
            for epochs in [config.sgd_epochs] + [1] * config.more_epochs:
                live = loop.cycle(live, epochs)
                if not live:
                    break
    loop.bar.close()
    for c in cells:
        c.model.eval()


class _Loop:
    """The state one fit carries across cycles: the batches, the frozen activations (cached
    after their first pass where that pays), the losses' modules, the threads, the counters."""

    def __init__(self, live: list[FitCell], dataset: Dataset, config: StitchConfig,
                 device: torch.device, senders: Activations, receivers: Activations,
                 progress: bool, objective: str | None = None) -> None:
        from tqdm import tqdm

        self.config, self.device = config, device
        self.objective = objective or ("task" if config.objective == "lstsq+task"
                                       else config.objective)
        # The start is a fitted candidate the rule may keep: a closed form, or the first stage
        self.fitted_start = config.objective.startswith("lstsq+") or objective == "task"
        self.loader = make_loader(dataset, "train", config.batch_size, device=device,
                                  train=True, augment=config.augment, seed=config.seed,
                                  channels_last=config.channels_last)
        # Over several epochs of unaugmented data, each example's frozen activations are kept
        # after its first pass (where they fit: the device, else disk); later epochs read them.
        self.sources = senders, receivers  # uncached: the held-out examples' start here
        epochs = config.sgd_epochs + config.more_epochs
        if (config.converges or epochs > 1) and not self.loader.augment.enabled \
                and config.activation_cache != "off":
            senders = CachedActivations(senders, self.loader.num_examples,
                                        config.activation_cache)
            if self.objective in TARGETED:
                receivers = CachedActivations(receivers, self.loader.num_examples,
                                              config.activation_cache)
        self.senders, self.receivers = senders, receivers
        self.suffixes = self._training_suffixes(live)
        # On a CPU, the units of a step run in threads, each op on one core: the cells sharing
        # a receiver suffix (stacked through it), or each cell alone. Else one unit of all.
        self.runner: CellThreads | InOrder = cell_runner(
            device, len(self._parallel_units(live)), config.cell_threads)
        self.units_of: list[FitCell] | None = None
        self.units: list[list[FitCell]] = []
        self.step = self.epoch = 0
        self.bar = tqdm(total=config.sgd_epochs * len(self.loader),
                        desc=f"stitch ({self.objective})", unit="step", leave=False,
                        disable=not progress, file=sys.stderr)

    def _training_suffixes(self, live: list[FitCell]) -> dict[int, nn.Module]:
        """The frozen receiver suffixes as the task loss runs them: with their BatchNorms
        folded into the convs (the same function, less work per step; the fused layers shared
        by one network's suffixes, stored in bf16 under bf16 autocast)."""
        if self.objective != "task" or not self.config.fold_batchnorm:
            return {}
        fused: dict = {}
        dtype = autocast_dtype(self.device, self.config.precision)
        suffixes = {}
        for c in live:
            suffix = c.model.receiver_suffix
            if id(suffix) not in suffixes and isinstance(suffix, fx.GraphModule):
                suffixes[id(suffix)] = fold_batchnorm(suffix, fused, dtype)
        return suffixes

    def _parallel_units(self, live: list[FitCell]) -> list[list[FitCell]]:
        if self.objective == "task" and self.config.stacking:
            by_suffix: dict[int, list[FitCell]] = {}
            for c in live:
                by_suffix.setdefault(id(c.model.receiver_suffix), []).append(c)
            return list(by_suffix.values())
        return [[c] for c in live]

    def cycle(self, live: list[FitCell], epochs: int) -> list[FitCell]:
        """`epochs` epochs under a fresh optimiser and schedule; the cells still improving."""
        total = epochs * len(self.loader)
        if self.epoch:  # a further cycle: the bar grows by its steps
            self.bar.total += total
            self.bar.refresh()
        opt, sched = make_optimiser(live, self.config, total)
        ledger = LossLedger(live, total, self.device)
        for _ in range(epochs):
            live = self.run_epoch(live, opt, sched, ledger)
            if not live:
                return []
        still = []
        for c in live:
            head, tail = ledger.quarters(c)
            # compared with the previous cycle's tail, or with this (first) cycle's head
            before = next((h["tail_loss"] for h in reversed(c.history) if "tail_loss" in h),
                          head)
            c.history[-1].update(head_loss=head, tail_loss=tail)
            if tail < (1 - self.config.improving) * before:
                still.append(c)
        return still

    def run_epoch(self, live: list[FitCell], opt: torch.optim.Optimizer,
                  sched: LRScheduler,
                  ledger: LossLedger) -> list[FitCell]:
        """One pass over the training data; the cells still finite at its end."""
        self.epoch += 1
        for c in live:
            c.model.train()
        ledger.new_epoch()
        slots = ledger.slots(live)
        for x, y in self.loader:
            self.sgd_step(live, x, y, opt, sched, ledger, slots)
            if self.step % CHECK_EVERY == 0:
                live, slots = self.drop_non_finite(live, slots, ledger)
                if live:
                    self.bar.set_postfix(epoch=self.epoch, cells=len(live),
                                         loss=f"{ledger.mean(live[0]):.4f}")
            self.bar.update(1)
            if not live:
                return []
        live, _ = self.drop_non_finite(live, slots, ledger)
        for c in live:
            c.history.append({"phase": self.objective, "epoch": self.epoch,
                              "loss": ledger.mean(c)})
        return live

    def until_converged(self, live: list[FitCell], held: Dataset) -> None:
        """One cycle at a constant learning rate. At the start and every `check_every` steps
        each live cell's objective is measured on the held-out examples; a cell stops, with
        the state of its best look restored, once past `min_steps` after `patience` looks that
        did not beat its reference by `tolerance` (converged; at the first `decays` such
        plateaus its learning rate drops instead), or at `max_steps` (not converged)."""
        config = self.config
        loader = make_loader(held, "train", max(config.batch_size, 256), device=self.device,
                             channels_last=config.channels_last)
        # Every look reads the same held-out examples: their frozen activations are kept
        # after the first look (where the training split's are), and later looks run only the
        # stitches and the receiver suffixes.
        self.held = tuple(source if config.activation_cache == "off" else
                          CachedActivations(source, loader.num_examples, config.activation_cache)
                          for source in self.sources)
        opt, sched = make_optimiser(live, replace(config, schedule="constant"),
                                    config.max_steps, per_cell=True)
        group_of = {id(c): i for i, c in enumerate(live)}  # its parameter group

        def decay(cell: FitCell) -> None:  # LambdaLR scales each group's base lr
            sched.base_lrs[group_of[id(cell)]] *= DECAY

        ledger = LossLedger(live, config.max_steps, self.device)
        self.bar.total = config.max_steps
        self.bar.refresh()
        # lstsq+task starts at the closed form: a start its steps cannot better is converged
        rule = StoppingRule(config, decay, fitted_start=self.fitted_start)

        def look(live: list[FitCell], last: bool) -> list[FitCell]:
            """Each live cell's held-out loss in its history and before the rule; the cells
            that go on (the training loss since the last look, after the start)."""
            looked = self.holdout_losses(live, loader)
            for c, loss in zip(live, looked, strict=True):
                row = {"phase": self.objective, "epoch": self.epoch, "step": self.step,
                       "holdout_loss": loss, "lr": opt.param_groups[group_of[id(c)]]["lr"]}
                c.history.append(row if not self.step else {**row, "loss": ledger.mean(c)})
            return rule.look(live, looked, self.step, last)

        # The start (the closed form, or the init) is the first look: a stitch that SGD never
        # betters on the held-out examples keeps it.
        live = look(live, last=False)
        slots = ledger.slots(live)
        while live:
            self.epoch += 1
            for c in live:
                c.model.train()
            for x, y in self.loader:
                self.sgd_step(live, x, y, opt, sched, ledger, slots)
                self.bar.update(1)
                last = self.step >= config.max_steps
                if self.step % CHECK_EVERY == 0 or self.step % config.check_every == 0 \
                        or last:
                    live, slots = self.drop_non_finite(live, slots, ledger)
                if live and (self.step % config.check_every == 0 or last):
                    live = look(live, last)
                    slots = ledger.slots(live)
                    ledger.new_epoch()  # the next look's training loss: its own window
                    self.bar.set_postfix(epoch=self.epoch, cells=len(live))
                if not live or last:
                    break
            if self.step >= config.max_steps:
                break

    @torch.no_grad()
    def holdout_losses(self, live: list[FitCell], loader) -> list[float]:
        """Each live cell's objective on the held-out examples, its stitch in eval mode."""
        senders, receivers = self.held
        units = self._units_for(live)
        sums, seen = torch.zeros(len(live), dtype=torch.float64), 0
        for c in live:
            c.model.eval()
        for x, y in loader:
            with autocast(self.device, self.config.precision):
                a = senders(x, loader.indices)
                t = receivers(x, loader.indices) if self.objective in TARGETED else None

            def unit_loss(unit: list[FitCell], a=a, t=t, y=y) -> torch.Tensor:
                with torch.no_grad(), autocast(self.device, self.config.precision):
                    return cell_losses(unit, self.objective, self.config.match_loss, a, t, y,
                                       self.suffixes, self.config.stacking,
                                       self.config.label_smoothing)

            batch = self._per_cell(live, units, unit_loss).double().cpu()
            sums += batch * len(y)
            seen += len(y)
        for c in live:
            c.model.train()
        return (sums / seen).tolist()

    def sgd_step(self, live: list[FitCell], x: torch.Tensor, y: torch.Tensor,
                 opt: torch.optim.Optimizer, sched: LRScheduler, ledger: LossLedger,
                 slots: torch.Tensor) -> None:
        """One step of every live cell on the batch, its loss in the ledger."""
        self.step += 1
        losses = self.losses_and_gradients(live, x, y)
        opt.step()
        _proximal_steps(live, opt)
        sched.step()
        opt.zero_grad(set_to_none=True)
        ledger.add(losses, slots, self.step, len(y))
        for c in live:
            c.steps, c.examples = c.steps + 1, c.examples + len(y)

    def losses_and_gradients(self, live: list[FitCell], x: torch.Tensor,
                             y: torch.Tensor) -> torch.Tensor:
        """Each live cell's loss on the batch (detached), its gradients accumulated."""
        indices = self.loader.indices
        with autocast(self.device, self.config.precision):
            a = self.senders(x, indices)
            t = self.receivers(x, indices) if self.objective in TARGETED else None
        if self.units_of is not live:  # the live cells changed: regroup them
            self.units_of = live
            self.units = self._units_for(live)

        def unit_step(unit: list[FitCell]) -> torch.Tensor:
            with autocast(self.device, self.config.precision):
                losses = cell_losses(unit, self.objective, self.config.match_loss, a, t, y,
                                     self.suffixes, self.config.stacking,
                                     self.config.label_smoothing)
            losses.sum().backward()  # each cell's own gradient: no shared parameter
            return losses.detach()

        return self._per_cell(live, self.units, unit_step)

    def _units_for(self, live: list[FitCell]) -> list[list[FitCell]]:
        """How the live cells run: in threads, by shared suffix or one by one; else one unit."""
        return self._parallel_units(live) if self.runner.parallel else [live]

    def _per_cell(self, live: list[FitCell], units: list[list[FitCell]],
                  fn) -> torch.Tensor:
        """`fn` (a unit -> its cells' losses) over the units, in threads where there are;
        the losses in `live`'s order."""
        found = self.runner.map(fn, units)
        if len(units) == 1:
            return found[0]
        loss_of = {id(c): loss for unit, losses in zip(units, found, strict=True)
                   for c, loss in zip(unit, losses, strict=True)}
        return torch.stack([loss_of[id(c)] for c in live])

    def drop_non_finite(self, live: list[FitCell], slots: torch.Tensor,
                        ledger: LossLedger) -> tuple[list[FitCell], torch.Tensor]:
        """Fail the cells whose loss went non-finite; the cells still live and their slots."""
        bad = ledger.first_bad[slots].tolist()  # one sync
        if max(bad, default=-1) < 0:
            return live, slots
        for c, step in zip(live, bad, strict=True):
            if step >= 0:
                c.error = TrainingError(
                    f"the stitch loss became non-finite at step {step} (epoch {self.epoch}); "
                    "lower the learning rate or use fp32. Nothing was saved.")
        live = alive(live)
        return live, ledger.slots(live)
