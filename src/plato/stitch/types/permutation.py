"""permutation: each output unit reads one input unit, times a scale, plus a bias (the same
units in another order, each in its own units). Where the sender is wider, a one-to-one
matching that leaves some of its units unread; where it is narrower, a semi-matching (each
input unit read by at most ceil(C_out / C_in) outputs). The matching is chosen in closed form
(scipy's linear_sum_assignment on the variance each pair explains), so the objective must
start from it: `lstsq` or `lstsq+task` (which then trains the scales and biases)."""

from __future__ import annotations

import torch
from torch import nn

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, register_stitch


class UnitMatching(nn.Module):
    def __init__(self, c_in: int, c_out: int, spatial: bool) -> None:
        super().__init__()
        view = (1, c_out, 1, 1) if spatial else (1, c_out)
        self.register_buffer("source", torch.arange(c_out) % c_in)  # set by the closed form
        self.scale = nn.Parameter(torch.ones(view))
        self.bias = nn.Parameter(torch.zeros(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.source] * self.scale + self.bias

    @torch.no_grad()
    def set(self, source: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> None:
        self.source.copy_(source)
        self.scale.copy_(scale.view(self.scale.shape).to(self.scale.dtype))
        self.bias.copy_(bias.view(self.bias.shape).to(self.bias.dtype))

    @torch.no_grad()
    def match_moments(self, out_mean, out_std, mean, std) -> None:
        factor = torch.where(out_std > 1e-12, std / out_std.clamp_min(1e-12),
                             torch.ones_like(out_std))
        bias = self.bias.double().flatten()
        self.bias.copy_(((bias - out_mean) * factor + mean).view(self.bias.shape)
                        .to(self.bias.dtype))
        self.scale.mul_(factor.view(self.scale.shape).to(self.scale.dtype))


def identity(stitch_map: UnitMatching, channels: int) -> None:
    stitch_map.set(torch.arange(channels), torch.ones(channels, dtype=torch.float64),
                   torch.zeros(channels, dtype=torch.float64))


@register_stitch("permutation", summary="each output one input unit, scaled, plus bias: "
                 "a (semi-)matching chosen in closed form",
                 parameters=lambda s, _: 2 * s.c_out, closed_form=closed_form.unit_matching,
                 identity=identity, starts_closed=True)
def permutation(shape: MapShape, _: None) -> nn.Module:
    return UnitMatching(shape.c_in, shape.c_out, shape.spatial)
