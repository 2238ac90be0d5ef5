"""convKxK: a K x K conv with bias and same padding (odd K: conv3x3, conv5x5, ...), on maps."""

from __future__ import annotations

import torch
from torch import nn

from plato.stitch.registry import MapShape, register_stitch


def identity(stitch_map: nn.Module, channels: int) -> None:
    with torch.no_grad():
        stitch_map.weight.zero_()
        k = stitch_map.kernel_size[0]
        stitch_map.weight[:, :, k // 2, k // 2] = torch.eye(channels)
        stitch_map.bias.zero_()


@register_stitch("convKxK", pattern=r"conv(\d+)x\1",
                 summary="a KxK conv with bias, same padding, odd K (conv3x3)",
                 parameters=lambda s, k: s.c_in * s.c_out * k * k + s.c_out,
                 invalid=lambda k: None if k % 2 == 1 else
                 f"K must be odd (same padding keeps the grid), got {k}",
                 identity=identity, vectors=False, pointwise=False)
def conv_kxk(shape: MapShape, k: int) -> nn.Module:
    return nn.Conv2d(shape.c_in, shape.c_out, k, padding=k // 2)
