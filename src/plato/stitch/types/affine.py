"""conv1x1: an affine map per position (a 1x1 conv with bias; a Linear on vectors)."""

from __future__ import annotations

import torch
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, register_stitch
from plato.stitch.types.parts import affine_count, linear


def identity(stitch_map: nn.Module, channels: int) -> None:
    closed_form.write_linear(stitch_map, torch.eye(channels, dtype=torch.float64),
                             torch.zeros(channels, dtype=torch.float64))


@register_stitch("conv1x1", summary="a 1x1 conv with bias: affine per position",
                 parameters=lambda s, _: affine_count(s.c_in, s.c_out),
                 closed_form=closed_form.affine, identity=identity)
def conv1x1(shape: MapShape, _: None) -> nn.Module:
    return linear(shape.c_in, shape.c_out, shape.spatial)
