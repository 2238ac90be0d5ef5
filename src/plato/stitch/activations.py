"""Frozen activations at several cut points of one network, from one forward pass per batch.

Many stitches of one sender/receiver pair read the same frozen activations. Running each
stitch's own prefix would repeat the network's forward pass once per cell; an
`Activations` source computes every point the cells need once per batch and hands each cell
its tensor by point name.

    Activations.of(graph, points)      one traced pass returning all the points (a sweep's grid)
    Activations.senders(models)        the models' own sender prefixes, one per distinct point
    Activations.receivers(models)      the same for the receivers' prefixes
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plato.models.cuts import CutGraph, CutPoint


class Activations:
    """Callable: a batch -> {point name: activation}, without gradients."""

    def __init__(self, parts: Sequence[tuple[tuple[str, ...], nn.Module]]) -> None:
        # Each part is (names, module); the module returns one tensor or a tuple, one per name.
        self.parts = list(parts)

    @classmethod
    def of(cls, graph: CutGraph, points: Sequence[CutPoint]) -> Activations:
        unique = list({p.name: p for p in points}.values())
        return cls([(tuple(p.name for p in unique), graph.extractor(unique).eval())])

    @classmethod
    def senders(cls, models: Sequence[nn.Module]) -> Activations:
        parts = {m.sender_point.name: m.sender_prefix for m in models}
        return cls([((name,), module) for name, module in parts.items()])

    @classmethod
    def receivers(cls, models: Sequence[nn.Module]) -> Activations:
        parts = {m.receiver_point.name: m.receiver_prefix for m in models}
        return cls([((name,), module) for name, module in parts.items()])

    def to(self, device: torch.device | str,
           memory_format: torch.memory_format = torch.contiguous_format) -> Activations:
        for _, module in self.parts:
            module.to(device, memory_format=memory_format)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for names, module in self.parts:
            values = module(x)
            if isinstance(values, torch.Tensor):
                values = (values,)
            out.update(zip(names, values, strict=True))
        return out
