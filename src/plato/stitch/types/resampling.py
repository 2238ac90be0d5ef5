"""plato: the original Plato study's learned resampling. Where the receiver's grid is k times
smaller, a k x k conv with stride k; where it is k times larger, a 1x1 conv then nearest
upsampling by k; where sizes agree, a 1x1 conv (and on vectors a Linear)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, ResamplingMap, register_stitch
from plato.stitch.types.parts import affine_count, linear


def _scale(shape: MapShape) -> tuple[str, int] | None:
    """('same', 1), ('down', k) or ('up', k) between the grids; None: no integer scale."""
    (hi, wi), (ho, wo) = shape.in_hw, shape.out_hw
    if (hi, wi) == (ho, wo):
        return "same", 1
    if hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
        return "down", hi // ho
    if ho % hi == 0 and wo % wi == 0 and ho // hi == wo // wi:
        return "up", ho // hi
    return None


class PlatoAdapter(ResamplingMap):
    """Strided k x k conv down, 1x1 conv then nearest repetition up."""

    def __init__(self, c_in: int, c_out: int, way: str, k: int) -> None:
        super().__init__()
        self.up = k if way == "up" else 1
        self.patch = k if way == "down" else 1
        self.conv = nn.Conv2d(c_in, c_out, self.patch, stride=self.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up > 1:  # a 1x1 conv commutes with repetition: convolve first, repeat after
            return F.interpolate(self.conv(x), scale_factor=self.up, mode="nearest")
        return self.conv(x)


def _refuses(shape: MapShape, _: None) -> str | None:
    if shape.spatial and _scale(shape) is None:
        return f"adapters need an integer scale between {shape.in_hw} and {shape.out_hw}"
    return None


def _parameters(shape: MapShape, _: None) -> int:
    way, k = _scale(shape) if shape.spatial else ("same", 1)
    return affine_count(shape.c_in * (k * k if way == "down" else 1), shape.c_out)


def identity(stitch_map: nn.Module, channels: int) -> None:
    layer = stitch_map.conv if isinstance(stitch_map, PlatoAdapter) else stitch_map
    closed_form.write_linear(layer, torch.eye(channels, dtype=torch.float64),
                             torch.zeros(channels, dtype=torch.float64))


@register_stitch("plato", summary="the original study's learned resampling: strided kxk conv "
                 "down, 1x1 conv and repetition up, 1x1 conv where sizes agree",
                 parameters=_parameters, closed_form=closed_form.affine, identity=identity,
                 refuses=_refuses, resamples=True)
def plato_adapter(shape: MapShape, _: None) -> nn.Module:
    if not shape.spatial:
        return linear(shape.c_in, shape.c_out, False)
    way, k = _scale(shape)
    return PlatoAdapter(shape.c_in, shape.c_out, way, k)
