"""The converging budget's rule: when a held-out loss says a stitch has stopped improving.

Looks come every `check_every` SGD steps (plato.stitch.sgd); at each, every live cell's
objective on examples held out of the training split is one number. A cell stops once past
`min_steps` after `patience` looks that did not beat its reference by `tolerance` (relative),
or at `max_steps` (then it has not converged); at each of its first `decays` such plateaus it
goes on instead, its learning rate dropped (the caller's `decay`). The stitch's state at its
lowest look is the one it keeps. Each cell's decision is its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from plato.stitch.cell import FitCell
from plato.stitch.config import StitchConfig


class StoppingRule:
    """When the held-out loss says a cell has converged. Per cell: the lowest held-out loss
    and the stitch's state at it (restored when the cell stops), and a reference that only a
    look beating it by `tolerance` moves, resetting the count of looks without improvement."""

    def __init__(self, config: StitchConfig,
                 decay: Callable[[FitCell], None] | None = None) -> None:
        self.config, self.decay = config, decay
        self.decays: dict[int, int] = {}  # plateaus each cell went on from at a lower rate
        self.best: dict[int, tuple[float, dict]] = {}
        self.reference: dict[int, float] = {}
        self.waits: dict[int, int] = {}

    def look(self, live: list[FitCell], losses: list[float], step: int,
             last: bool) -> list[FitCell]:
        """Record each cell's look; the cells that go on."""
        go_on = []
        for c, loss in zip(live, losses, strict=True):
            c.curve.append((step, loss))
            key = id(c)
            if loss < self.best.get(key, (math.inf, None))[0]:
                self.best[key] = (loss, {k: v.detach().clone()
                                         for k, v in c.model.stitch.state_dict().items()})
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
                self.stop(c, converged=True)
            elif last:
                self.stop(c, converged=False)
            else:
                go_on.append(c)
        return go_on

    def stop(self, cell: FitCell, converged: bool) -> None:
        cell.converged = converged
        if id(cell) in self.best:
            cell.model.stitch.load_state_dict(self.best[id(cell)][1])
