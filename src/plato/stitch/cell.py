"""One stitch being fitted: its model, the points it reads, its history, and the error that
stopped it (a cell that fails is dropped; the others go on)."""

from __future__ import annotations

from plato.errors import PlatoError
from plato.stitch.stitched import StitchedModel


class FitCell:
    def __init__(self, model: StitchedModel) -> None:
        self.model = model
        self.s_name, self.r_name = model.sender_point.name, model.receiver_point.name
        self.history: list[dict] = []  # one row per phase or epoch: {"phase", "loss", ...}
        self.error: PlatoError | None = None
        self.steps = self.examples = 0  # SGD steps taken, training examples seen
        self.converged: bool | None = None  # set by the held-out rule (budget "converge")
        self.stop_reason: str | None = None  # why it stopped (plato.stopping.STOP_REASONS)
        self.curve: list[tuple[int, float]] = []  # (step, held-out loss) at each look

    @property
    def fitted(self):
        """What the converging rule keeps the best state of (plato.stopping): the stitch."""
        return self.model.stitch

    @property
    def alive(self) -> bool:
        return self.error is None

    @property
    def sgd_epochs(self) -> int:
        """The passes over the training data this cell took part in (the last may be part
        of one, under the budget "converge")."""
        return max((h["epoch"] for h in self.history if "epoch" in h), default=0)


def alive(cells: list[FitCell]) -> list[FitCell]:
    return [c for c in cells if c.alive]
