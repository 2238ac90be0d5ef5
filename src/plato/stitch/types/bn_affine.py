"""bn-conv1x1-bn: BatchNorm, a 1x1 conv with bias, BatchNorm (Bansal, Nakkiran & Barak 2021);
the default for conv -> conv."""

from __future__ import annotations

import torch
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, register_stitch
from plato.stitch.types.parts import affine_count, batchnorm, linear


def identity(stitch_map: nn.Module, channels: int) -> None:
    bn1, lin, bn2 = stitch_map
    zero = torch.zeros(channels, dtype=torch.float64)
    for bn in (bn1, bn2):  # (x - 0) / sqrt((1 - eps) + eps) * 1 + 0 == x exactly
        closed_form.write_batchnorm(
            bn, mean=zero, var=torch.full((channels,), 1 - bn.eps, dtype=torch.float64),
            weight=torch.ones(channels, dtype=torch.float64), bias=zero)
    closed_form.write_linear(lin, torch.eye(channels, dtype=torch.float64), zero)


@register_stitch("bn-conv1x1-bn",
                 summary="BatchNorm, 1x1 conv with bias, BatchNorm (Bansal et al. 2021)",
                 parameters=lambda s, _: 2 * s.c_in + affine_count(s.c_in, s.c_out)
                 + 2 * s.c_out,
                 closed_form=closed_form.standardised_affine, identity=identity)
def bn_conv1x1_bn(shape: MapShape, _: None) -> nn.Module:
    return nn.Sequential(batchnorm(shape.c_in, shape.spatial),
                         linear(shape.c_in, shape.c_out, shape.spatial),
                         batchnorm(shape.c_out, shape.spatial))
