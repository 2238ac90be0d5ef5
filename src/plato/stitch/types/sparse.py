"""sparse-N: the affine map (conv1x1) with an L1 penalty of strength 10^-N on its weights
(not its bias): few units carry the representation. Trained by proximal steps (after each
optimiser step the weights are soft-thresholded by the learning rate times the strength, so
they reach exactly zero); fitted in closed form as a lasso on the statistics (FISTA). A cell
reports the fraction of its weights that are not zero."""

from __future__ import annotations

import torch
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, register_stitch
from plato.stitch.types.affine import identity as affine_identity
from plato.stitch.types.parts import affine_count, linear


class SparseMap(nn.Module):
    def __init__(self, c_in: int, c_out: int, spatial: bool, strength: float) -> None:
        super().__init__()
        self.layer = linear(c_in, c_out, spatial)
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    @torch.no_grad()
    def proximal(self, lr: float) -> None:
        """The L1 penalty's proximal step after an optimiser step of learning rate `lr`."""
        self.layer.weight.copy_(closed_form.soft_threshold(self.layer.weight,
                                                           lr * self.strength))

    def nonzero_fraction(self) -> float:
        return float((self.layer.weight != 0).float().mean())


def identity(stitch_map: SparseMap, channels: int) -> None:
    affine_identity(stitch_map.layer, channels)


@register_stitch("sparse-N", pattern=r"sparse-(\d+)",
                 summary="conv1x1 with an L1 penalty of strength 10^-N on its weights",
                 parameters=lambda s, _: affine_count(s.c_in, s.c_out),
                 invalid=lambda n: None if 0 <= n <= 12 else
                 f"N must be 0 to 12 (strength 1 to 1e-12), got {n}",
                 closed_form=closed_form.lasso, identity=identity)
def sparse(shape: MapShape, n: int) -> nn.Module:
    return SparseMap(shape.c_in, shape.c_out, shape.spatial, 10.0 ** -n)
