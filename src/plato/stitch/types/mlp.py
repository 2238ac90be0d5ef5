"""mlp: a 1x1 conv, ReLU, a 1x1 conv; hidden width max(C_in, C_out). Not linear: no closed
form, no identity."""

from __future__ import annotations

from torch import nn

from plato.stitch.registry import MapShape, register_stitch
from plato.stitch.types.parts import affine_count, linear


def _hidden(shape: MapShape) -> int:
    return max(shape.c_in, shape.c_out)


@register_stitch("mlp", summary="1x1 conv, ReLU, 1x1 conv (hidden width max(C_in, C_out))",
                 parameters=lambda s, _: affine_count(s.c_in, _hidden(s))
                 + affine_count(_hidden(s), s.c_out))
def mlp(shape: MapShape, _: None) -> nn.Module:
    hidden = _hidden(shape)
    return nn.Sequential(linear(shape.c_in, hidden, shape.spatial), nn.ReLU(),
                         linear(hidden, shape.c_out, shape.spatial))
