"""StitchedModel: frozen sender prefix -> stitch -> frozen receiver suffix.

Frozen means frozen: the prefix and suffix have requires_grad=False and stay in eval mode
whatever `.train()` is called with, so their parameters and BatchNorm buffers never change.
Only the stitch trains. The frozen parts share storage with the networks they came from.
"""

from __future__ import annotations

import copy
import threading
import weakref

import torch
from torch import nn

from plato.errors import PlatoError
from plato.models import cut_graph
from plato.models.cuts import CutGraph, CutPoint
from plato.stitch.layers import Stitch


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


_PRE_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PRE_LOGITS_LOCK = threading.Lock()  # cells in CPU threads may ask for one suffix's at once


def pre_logits(suffix: nn.Module) -> nn.Module:
    """The frozen suffix without its classifier: a copy with its last Linear layer replaced by
    the identity, so that it returns the network's pre-logit features (made once per suffix;
    a copy rather than a hook, which cells running in threads would share)."""
    with _PRE_LOGITS_LOCK:
        if suffix not in _PRE_LOGITS:
            heads = [name for name, m in suffix.named_modules() if isinstance(m, nn.Linear)]
            if not heads:
                raise PlatoError("objective final needs the receiver's classifier (a Linear "
                                 "layer) after the cut point, to match the features it reads")
            features = copy.deepcopy(suffix)
            features.set_submodule(heads[-1], nn.Identity())
            _PRE_LOGITS[suffix] = freeze(features)
        return _PRE_LOGITS[suffix]


def head_input(suffix: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features the suffix's classifier reads when it runs on `x` (pre_logits)."""
    return pre_logits(suffix)(x)


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
