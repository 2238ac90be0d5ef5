"""lowrank-R: a 1x1 conv to R units without bias, then a 1x1 conv with bias: rank <= R."""

from __future__ import annotations

import torch
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.errors import PlatoError
from plato.stitch.registry import MapShape, register_stitch
from plato.stitch.types.parts import affine_count, linear


def identity(stitch_map: nn.Module, channels: int) -> None:
    first, second = stitch_map
    rank = first.weight.shape[0]
    if rank < channels:
        raise PlatoError(f"lowrank-{rank} has rank {rank} < {channels}: it cannot be the "
                         "identity")
    closed_form.write_linear(first, torch.eye(channels, rank, dtype=torch.float64), None)
    closed_form.write_linear(second, torch.eye(rank, channels, dtype=torch.float64),
                             torch.zeros(channels, dtype=torch.float64))


@register_stitch("lowrank-R", pattern=r"lowrank-(\d+)",
                 summary="1x1 conv to R units, then 1x1 conv with bias: rank <= R",
                 parameters=lambda s, rank: affine_count(s.c_in, rank, bias=False)
                 + affine_count(rank, s.c_out),
                 invalid=lambda rank: None if rank >= 1 else "the rank must be at least 1",
                 closed_form=closed_form.reduced_rank, identity=identity)
def lowrank(shape: MapShape, rank: int) -> nn.Module:
    return nn.Sequential(linear(shape.c_in, rank, shape.spatial, bias=False),
                         linear(rank, shape.c_out, shape.spatial))
