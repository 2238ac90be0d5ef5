"""`mlp-W1xW2x...`: a multilayer perceptron with hidden widths W1, W2, ...

The image is flattened first. Each hidden layer is Linear + ReLU; its output is a cut point
(`hidden1` is the stem, the last hidden layer the pre-logit vector). `residual=True` adds a skip
connection around every hidden layer after the first (identity, or a linear map where the
widths differ).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.registry import MAX_BLOCKS, MAX_WIDTH, register_family


class Hidden(nn.Module):
    def __init__(self, din: int, dout: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.linear = nn.Linear(din, dout)
        if residual:
            self.shortcut = nn.Identity() if din == dout else nn.Linear(din, dout, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.residual:
            out = out + self.shortcut(x)
        return self.act(out)


class MLP(nn.Module):
    def __init__(self, widths: tuple[int, ...], num_classes: int, in_features: int,
                 residual: bool) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.num_hidden = len(widths)
        din = in_features
        for k, w in enumerate(widths, start=1):
            setattr(self, f"hidden{k}", Hidden(din, w, residual and k > 1))
            din = w
        self.fc = nn.Linear(din, num_classes)
        self.cut_blocks = tuple(f"hidden{k}" for k in range(1, len(widths) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)  # (B, C, H, W) -> (B, C*H*W)
        for k in range(1, self.num_hidden + 1):
            x = getattr(self, f"hidden{k}")(x)
        return self.fc(x)


@register_family(r"mlp-(\d+(?:x\d+)*)", "mlp-W1xW2x... (hidden widths, e.g. mlp-512x256)",
                 ("mlp-256", "mlp-512x512", "mlp-512x256x128"))
def mlp(match: re.Match, num_classes, input_shape, residual: bool = False) -> MLP:
    widths = tuple(int(w) for w in match.group(1).split("x"))
    if min(widths) < 1:
        raise ModelError(f"mlp-{match.group(1)}: every hidden width must be positive")
    if len(widths) > MAX_BLOCKS or max(widths) > MAX_WIDTH:
        raise ModelError(f"mlp-{match.group(1)}: at most {MAX_BLOCKS} hidden layers of at "
                         f"most {MAX_WIDTH} units")
    return MLP(widths, num_classes, math.prod(input_shape), residual)
