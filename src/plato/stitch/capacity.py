"""How much transformation a stitch needs: one pair of cut points stitched by families of
growing capacity (a matching, an orthogonal map, sparse maps at several strengths, low-rank
maps at several ranks, the affine map), accuracy against the stitch's free parameters.

Free parameters count what the family can move: an orthogonal map of k = min(C_in, C_out)
orthonormal directions in max(C_in, C_out) dimensions has C_in C_out - k(k+1)/2 of them (the
Stiefel manifold's dimension), plus its scale and bias; a matching its scales and biases (the
matching itself is discrete); a sparse map its non-zero weights and biases (measured); the
others every parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch import nn

from plato.checkpoint import Checkpoint
from plato.data.datasets import Dataset
from plato.errors import PlatoError
from plato.stitch.config import StitchConfig
from plato.stitch.run import stitch_grid
from plato.stitch.stitched import StitchedModel

SPARSE_LEVELS = (1, 2, 3)  # sparse-N: strengths 0.1, 0.01, 0.001


@dataclass
class CapacityRow:
    family: str  # permutation | orthogonal | sparse | lowrank | affine
    stitch: str  # the type's name (lowrank-8, sparse-2, conv1x1)
    free_parameters: int
    parameters: int  # as stored
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    converged: bool | None
    stop_reason: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def capacity_stitches(c_in: int, c_out: int) -> list[str]:
    """The families in order of capacity: the matching, the orthogonal map, sparse maps from
    the strongest penalty, low-rank maps of ranks 1, 2, 4, ... below min(C_in, C_out), the
    affine map."""
    ranks = [2 ** i for i in range(int(math.log2(min(c_in, c_out))) + 1)
             if 2 ** i < min(c_in, c_out)]
    return (["permutation", "orthogonal"] + [f"sparse-{n}" for n in SPARSE_LEVELS]
            + [f"lowrank-{r}" for r in ranks] + ["conv1x1"])


def free_parameters(model: StitchedModel) -> int:
    """What the stitch's family can move (see the module's text)."""
    stitch = model.stitch
    stitch_map, c_in, c_out = stitch.map, stitch.in_core[0], stitch.out_core[0]
    if hasattr(stitch_map, "nonzero_fraction"):  # sparse: its non-zero weights, its biases
        return int((stitch_map.layer.weight != 0).sum()) + c_out
    if stitch.type.name == "orthogonal":
        k = min(c_in, c_out)
        return c_in * c_out - k * (k + 1) // 2 + 1 + c_out
    return stitch.num_parameters


def family_of(stitch: str) -> str:
    return {"conv1x1": "affine"}.get(stitch, stitch.split("-")[0])


def capacity_table(sender: nn.Module | Checkpoint, receiver: nn.Module | Checkpoint,
                   from_point: str | int, to_point: str | int, dataset: Dataset,
                   stitches: list[str] | None = None, config: StitchConfig | None = None,
                   progress: bool = False) -> list[CapacityRow]:
    """Each stitch of `stitches` (default: capacity_stitches of the points' widths) fitted
    between the two points by `config` (default: the converging default), one row each."""
    config = config or StitchConfig.converging()
    if stitches is None:
        (probe, model), = stitch_grid(sender, receiver, [(from_point, to_point)], dataset,
                                      stitch="conv1x1", config=config, progress=progress)
        if isinstance(probe, Exception):
            raise probe
        rows = [_row("conv1x1", probe, model)]
        stitches = capacity_stitches(model.stitch.in_core[0], model.stitch.out_core[0])[:-1]
    else:
        rows = []
    for name in stitches:
        (result, model), = stitch_grid(sender, receiver, [(from_point, to_point)], dataset,
                                       stitch=name, config=config, progress=progress)
        if isinstance(result, Exception):
            raise PlatoError(f"{name}: {result}")
        rows.append(_row(name, result, model))
    order = {f: i for i, f in enumerate(("permutation", "orthogonal", "sparse", "lowrank",
                                         "affine"))}
    return sorted(rows, key=lambda r: (order.get(r.family, len(order)), r.free_parameters))


def _row(name: str, result, model: StitchedModel) -> CapacityRow:
    return CapacityRow(family_of(name), name, free_parameters(model), result.stitch_parameters,
                       result.stitched_accuracy, result.accuracy_low, result.accuracy_high,
                       result.converged, result.stop_reason)
