"""Fitting stitches: the objectives, put together from their parts.

    task        cross-entropy on the labels through the frozen receiver suffix   (sgd.py)
    match       MSE (or L1) to the receiver's own activation at its cut point: the
                "autoencoder stitch"                                            (sgd.py)
    lstsq       closed-form ridge least squares onto the receiver's activation  (statistics.py)
    lstsq+task  the closed form as the starting point, then the task loss
    final       MSE (or L1) of the stitched network's pre-logit features (the input of the
                receiver's classifier) to the receiver's own on the same input (Mai et al.)
    final+task  final to convergence, then the task loss from there: two stages
    translate   training-free: both sides standardised on anchor examples, a linear or
                orthogonal map between them (Maiorca et al. 2023)          (closed_form.py)

`fit_stitches` fits many stitches at once: the stitches of one sender/receiver pair read their
frozen activations from one `Activations` pass per batch and step in lockstep over the same
batches, so the frozen networks run once per batch, not once per cell. Each cell's arithmetic
is what it would be alone (same batches, same initialisation, same order of operations), so a
grid gives the results of its cells fitted one by one; where cells share a receiver suffix
(`stacking`) or run in CPU threads, up to rounding. A cell that fails (a non-finite loss, a
singular system) is dropped and reported; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from plato.data.datasets import Dataset, hold_out
from plato.device import memory_format, resolve_device
from plato.errors import PlatoError
from plato.stitch.activations import Activations
from plato.stitch.cell import FitCell, alive
from plato.stitch.config import StitchConfig
from plato.stitch.sgd import fit_sgd
from plato.stitch.statistics import fit_lstsq, init_moments
from plato.stitch.stitched import StitchedModel, pre_logits

# Why a fit without a gradient step stopped (its cell records 0 steps).
CLOSED_REASON = {"lstsq": "closed form", "translate": "translated"}


@dataclass
class FitInfo:
    loss: float  # the objective's final training loss (lstsq: the closed-form train MSE)
    epochs: int  # SGD epochs the cell trained
    seconds: float  # this cell's share of the shared passes
    history: list[dict] = field(default_factory=list)  # one row per phase, epoch or look
    steps: int = 0  # SGD steps taken
    examples: int = 0  # training examples seen by those steps
    converged: bool | None = None  # on a plateau after it moved (plato.stopping); None:
    #                                a fixed budget
    stop_reason: str = "epochs"  # plateau | step cap | stalled | diverged (plato.stopping),
    #                              epochs (a fixed budget) or closed form (lstsq)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)


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
    config = config or StitchConfig.converging()
    config = replace(config, label_smoothing=config.smoothing_for(
        [m.receiver_label_smoothing for m in models]))  # `receiver` resolved: a number
    device = resolve_device(config.device)
    layout = memory_format(config.channels_last)
    for m in models:
        m.to(device, memory_format=layout)
    senders = (senders or Activations.senders(models)).to(device, layout)
    receivers = (receivers or Activations.receivers(models)).to(device, layout)
    start = time.perf_counter()
    held = None
    if config.converges:  # the rule decides on examples no part of the fit has seen
        dataset, held = hold_out(dataset, config.holdout_examples(len(dataset.train)),
                                 config.seed)
    cells = [FitCell(m) for m in models]
    from_scratch = config.objective in ("task", "match", "final", "final+task")
    for c in cells:  # refused before any pass over the data
        if from_scratch and c.model.stitch.type.starts_closed:
            c.error = PlatoError(
                f"{c.model.stitch.kind} chooses its units in closed form, which "
                f"objective '{config.objective}' skips: use lstsq or lstsq+task")
        elif config.objective.startswith("final"):
            try:
                pre_logits(c.model.receiver_suffix)
            except PlatoError as e:
                c.error = e
    if config.objective in ("lstsq", "lstsq+task", "translate"):
        fit_lstsq(cells, dataset, config, device, senders, receivers,
                  translate=config.objective == "translate")
    if from_scratch and config.init == "moments":
        init_moments(cells, dataset, config, device, senders, receivers)
    if config.objective == "final+task":  # two stages, each to its own convergence
        fit_sgd(cells, dataset, config, device, senders, receivers, progress, held, "final")
        first = {id(c): (c.converged, c.stop_reason) for c in cells}
        fit_sgd(cells, dataset, config, device, senders, receivers, progress, held, "task")
        for c in alive(cells):  # converged where both stages did; else why the first stopped
            converged, reason = first[id(c)]
            if converged is False:
                c.converged, c.stop_reason = False, f"final stage: {reason}"
    elif config.converges or config.sgd_epochs:
        fit_sgd(cells, dataset, config, device, senders, receivers, progress, held)
    share = (time.perf_counter() - start) / max(1, len(cells))
    return [c.error if c.error is not None else
            FitInfo(loss=c.history[-1]["loss"], epochs=c.sgd_epochs, seconds=share,
                    history=c.history, steps=c.steps, examples=c.examples,
                    converged=c.converged, curve=c.curve,
                    stop_reason=c.stop_reason or CLOSED_REASON.get(config.objective, "epochs"))
            for c in cells]
