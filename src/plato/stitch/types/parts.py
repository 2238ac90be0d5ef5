"""The layers stitch maps are built from: each comes as a conv (on maps) or as its Linear
equivalent (on vectors)."""

from __future__ import annotations

from torch import nn


def linear(c_in: int, c_out: int, spatial: bool, bias: bool = True) -> nn.Module:
    """Affine per position: a 1x1 conv on maps, a Linear on vectors."""
    return nn.Conv2d(c_in, c_out, 1, bias=bias) if spatial else nn.Linear(c_in, c_out, bias=bias)


def batchnorm(channels: int, spatial: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)


def affine_count(c_in: int, c_out: int, bias: bool = True) -> int:
    """The parameters of `linear(c_in, c_out)`."""
    return c_in * c_out + (c_out if bias else 0)
