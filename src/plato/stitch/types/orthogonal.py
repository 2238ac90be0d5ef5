"""orthogonal: one scale times an orthogonal map, plus a bias per output (a similarity
transform: the same representation up to rotation, reflection, scale and shift). Where the
widths differ the map is semi-orthogonal: orthonormal columns from the narrower side (the
wider side's extra directions are dropped or left at zero). Trained on the orthogonal
manifold by torch's `orthogonal` parametrisation; fitted in closed form by Procrustes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

import plato.stitch.closed_form as closed_form
from plato.stitch.registry import MapShape, register_stitch


class OrthogonalMap(nn.Module):
    def __init__(self, c_in: int, c_out: int, spatial: bool) -> None:
        super().__init__()
        self.spatial = spatial
        self.rotation = parametrizations.orthogonal(nn.Linear(c_in, c_out, bias=False))
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def weight(self) -> torch.Tensor:
        return self.scale * self.rotation.weight  # (c_out, c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            return F.conv2d(x, self.weight()[:, :, None, None], self.bias)
        return F.linear(x, self.weight(), self.bias)

    @torch.no_grad()
    def set(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> None:
        """q: (c_in, c_out) in design-row order, orthonormal on its narrower side."""
        dtype = self.bias.dtype
        self.rotation.weight = q.T.to(dtype)  # through the parametrisation's right inverse
        self.scale.copy_(scale.to(dtype))
        self.bias.copy_(bias.to(dtype))

    @torch.no_grad()
    def match_moments(self, out_mean, out_std, mean, std) -> None:
        """The task and match objectives' start: the scale matches the outputs' overall
        spread to the receiver's (one number: the map stays orthogonal), the bias each
        channel's mean."""
        factor = (std.pow(2).mean() / out_std.pow(2).mean().clamp_min(1e-24)).sqrt()
        self.bias.copy_((mean - factor * (out_mean - self.bias.double())).to(self.bias.dtype))
        self.scale.mul_(factor.to(self.scale.dtype))


def identity(stitch_map: OrthogonalMap, channels: int) -> None:
    eye = torch.eye(channels, dtype=torch.float64)
    stitch_map.set(eye, torch.ones((), dtype=torch.float64),
                   torch.zeros(channels, dtype=torch.float64))


@register_stitch("orthogonal", summary="one scale times a (semi-)orthogonal map, plus bias: "
                 "Procrustes (Csiszarik et al. 2021)",
                 parameters=lambda s, _: s.c_in * s.c_out + 1 + s.c_out,
                 closed_form=closed_form.orthogonal, identity=identity)
def orthogonal(shape: MapShape, _: None) -> nn.Module:
    return OrthogonalMap(shape.c_in, shape.c_out, shape.spatial)
