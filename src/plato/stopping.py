"""The converging rule: when a held-out loss says a fit has stopped improving. One rule for every
fit Plato runs to convergence: stitches (plato.stitch.sgd, many cells at once) and decoders
(plato.interpret.invert).

Looks come every `check_every` steps (the caller's loop); at each, every live fit's objective
on examples held out of the training split is one number. A fit stops once past `min_steps`
after `patience` looks that did not beat its reference by `tolerance` (relative), or at the
last look its caller allows (`max_steps`); at each of its first `decays` plateaus it goes on
instead, its learning rate dropped (the caller's `decay`). The fitted module's state at its
lowest look is the one it keeps. Each fit's decision is its own.

Stopping is not converging. A fit has converged when it stopped on a plateau after it moved:
its held-out loss improved on its start (the first look) by more than `tolerance`, and its
parameters moved from their start by more than MOVED of their size (a BatchNorm's running
statistics alone can lower the held-out loss of a fit whose steps are too small to move it).
A fit that starts from a fitted solution (the closed form of `lstsq+task`, `fitted_start`)
may have nothing left to improve: it has converged when its steps moved it by more than
MOVED and found no look better than its start by `tolerance` (the start is what it keeps, or
a look within `tolerance` of it). From an initialisation, not improving is never converging.
Every fit says why it stopped (`stop_reason`):

    plateau        converged: a plateau after it moved and improved
    optimal start  converged: a fitted start its steps moved away from and did not better
    step cap       stopped by the caller's last look, still improving
    stalled        stopped on a plateau it reached without moving (its steps were too small:
                   a learning rate of 1e-7 gives this), or, from an initialisation, without
                   improving on it
    diverged       its last look is not finite, or its steps took its held-out loss to
                   DIVERGED times its start and it never improved on the start
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

MOVED = 1e-3  # a fit moved when its parameters changed by this fraction of their norm
# A held-out loss that ends at twice its start has diverged; a few percent above it is the
# noise of SGD steps around a start they cannot better (self-stitches of the reference study
# rise 1-5% at the first look and come back down).
DIVERGED = 2.0
CONVERGED = ("plateau", "optimal start")  # the reasons of a converged fit
STOP_REASONS = (*CONVERGED, "step cap", "stalled", "diverged")


class Settings(Protocol):
    """The rule's settings, as StitchConfig and InvertConfig both hold them."""

    tolerance: float  # a look improves when it beats the reference by this fraction
    patience: int  # looks without improving make a plateau
    decays: int  # plateaus at which the learning rate drops before one stops the fit
    min_steps: int  # steps before the rule may stop a fit


class Watched(Protocol):
    """What the rule watches: a fit's looks, whether it converged, and its fitted module."""

    curve: list[tuple[int, float]]  # (step, held-out loss) at each look
    converged: bool | None
    stop_reason: str | None  # why it stopped (STOP_REASONS)

    @property
    def fitted(self) -> nn.Module: ...


@dataclass(eq=False)
class Fitting:
    """One module fitted under the rule (what a cell is to the stitch loop)."""

    fitted: nn.Module
    curve: list[tuple[int, float]] = field(default_factory=list)
    converged: bool | None = None
    stop_reason: str | None = None


class StoppingRule:
    """When the held-out loss says a fit has converged. Per fit: the lowest held-out loss and
    the fitted module's state at it (restored when the fit stops), and a reference that only a
    look beating it by `tolerance` moves, resetting the count of looks without improvement."""

    def __init__(self, settings: Settings, decay: Callable[[Watched], None] | None = None,
                 fitted_start: bool = False) -> None:
        self.config, self.decay = settings, decay
        self.fitted_start = fitted_start  # the first look is a fitted solution, not an init
        self.decays: dict[int, int] = {}  # plateaus each fit went on from at a lower rate
        self.best: dict[int, tuple[float, dict]] = {}
        self.start: dict[int, tuple[float, torch.Tensor]] = {}  # first look, parameters
        self.reference: dict[int, float] = {}
        self.waits: dict[int, int] = {}

    def look(self, live: list[Watched], losses: list[float], step: int,
             last: bool) -> list[Watched]:
        """Record each fit's look; the fits that go on."""
        go_on = []
        for c, loss in zip(live, losses, strict=True):
            c.curve.append((step, loss))
            key = id(c)
            if key not in self.start:
                self.start[key] = (loss, _parameters(c.fitted))
            if loss < self.best.get(key, (math.inf, None))[0]:
                self.best[key] = (loss, {k: v.detach().clone()
                                         for k, v in c.fitted.state_dict().items()})
            if loss < self.reference.get(key, math.inf) * (1 - self.config.tolerance):
                self.reference[key], self.waits[key] = loss, 0
            else:
                self.waits[key] = self.waits.get(key, 0) + 1
            plateau = step >= self.config.min_steps and self.waits[key] >= self.config.patience
            if plateau and self.decays.get(key, 0) < self.config.decays and not last:
                self.decays[key] = self.decays.get(key, 0) + 1
                self.waits[key] = 0
                self.decay(c)
                go_on.append(c)
            elif plateau:
                self.stop(c, plateau=True)
            elif last:
                self.stop(c, plateau=False)
            else:
                go_on.append(c)
        return go_on

    def stop(self, fit: Watched, plateau: bool) -> None:
        """End a fit: its best state back, why it stopped and whether it converged.
        `plateau`: the rule found it on one (False: the caller's last look stopped it)."""
        key = id(fit)
        end = _parameters(fit.fitted)  # where its steps took it
        if key in self.best:
            fit.fitted.load_state_dict(self.best[key][1])
        fit.stop_reason = "plateau" if plateau else "step cap"
        if key in self.start:
            start, before = self.start[key]
            tolerance = self.config.tolerance

            def moved(params: torch.Tensor) -> bool:
                return float((params - before).norm()) > MOVED * max(float(before.norm()),
                                                                     1e-12)

            improved = self.lowest(fit) < start * (1 - tolerance)
            last = fit.curve[-1][1]
            if not math.isfinite(last) or (moved(end) and not improved
                                           and last > start * DIVERGED):
                fit.stop_reason = "diverged"
            elif not plateau or (improved and moved(_parameters(fit.fitted))):
                pass  # the step cap, or converged on a plateau
            elif self.fitted_start and not improved and moved(end):
                fit.stop_reason = "optimal start"
            else:
                fit.stop_reason = "stalled"
        fit.converged = fit.stop_reason in CONVERGED

    def lowest(self, fit: Watched) -> float:
        """The fit's lowest held-out loss so far."""
        return self.best.get(id(fit), (math.inf, None))[0]


def _parameters(module: nn.Module) -> torch.Tensor:
    """A module's trainable parameters, flat, in float64 on the CPU (a copy)."""
    values = [p.detach().reshape(-1).double().cpu() for p in module.parameters()
              if p.requires_grad]
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)
