"""StitchedModel: frozen sender prefix -> stitch -> frozen receiver suffix.

Frozen means frozen: the prefix and suffix have requires_grad=False and stay in eval mode
whatever `.train()` is called with, so their parameters and BatchNorm buffers never change.
Only the stitch trains. The frozen parts share storage with the networks they came from.
"""

from __future__ import annotations

import torch
from torch import nn

from plato.models import cut_graph
from plato.models.cuts import CutGraph, CutPoint
from plato.stitch.layers import Stitch


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class StitchedModel(nn.Module):
    def __init__(
        self,
        sender: nn.Module | CutGraph,
        sender_point: str | int | CutPoint,
        stitch: Stitch | str,
        receiver: nn.Module | CutGraph,
        receiver_point: str | int | CutPoint,
        *,
        granularity: str = "block",
        resize: str = "area",
        class_token: str = "map",
    ) -> None:
        super().__init__()
        s_graph = sender if isinstance(sender, CutGraph) else cut_graph(sender)
        r_graph = receiver if isinstance(receiver, CutGraph) else cut_graph(receiver)
        self.sender_point = s_graph.point(sender_point, granularity)
        self.receiver_point = r_graph.point(receiver_point, granularity)
        if isinstance(stitch, str):
            stitch = Stitch(stitch, self.sender_point.shape, self.receiver_point.shape, resize,
                            class_token, self.sender_point.tokens, self.receiver_point.tokens)
        self.stitch = stitch
        sender_prefix, sender_suffix = s_graph.split(self.sender_point)
        self.sender_prefix = freeze(sender_prefix)
        # The sender's own rest: not part of the stitched pass, there to explain the sender
        # beside the stitched network (plato.interpret.saliency).
        self.sender_suffix = freeze(sender_suffix)
        receiver_prefix, receiver_suffix = r_graph.split(self.receiver_point)
        self.receiver_suffix = freeze(receiver_suffix)
        # The receiver's own activation at its point: the target of `match` and the reference
        # of the activation metrics. Not part of the stitched forward pass.
        self.receiver_prefix = freeze(receiver_prefix)
        # The label smoothing the receiver was trained with (its checkpoint's recipe; 0 for
        # a network of unknown training): the task loss of `label_smoothing: receiver`.
        recipe = getattr(r_graph.model, "plato_recipe", None) or {}
        self.receiver_label_smoothing = float(recipe.get("label_smoothing", 0.0))

    def train(self, mode: bool = True) -> StitchedModel:
        super().train(mode)
        for frozen in (self.sender_prefix, self.sender_suffix, self.receiver_suffix,
                       self.receiver_prefix):
            frozen.eval()
        return self

    def sender_activation(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.sender_prefix(x)

    def receiver_activation(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.receiver_prefix(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.receiver_suffix(self.stitch(self.sender_activation(x)))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.stitch.parameters() if p.requires_grad]
