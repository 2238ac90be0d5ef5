"""`cnn-N`: a plain conv net of N conv-BN-ReLU blocks (the first is the stem).

Channels double over the first blocks (width, 2 width, 4 width, then constant) and blocks 1-3
halve the resolution with a 2x2 max-pool. `residual=True` adds a skip connection around each
block after the stem (identity, or a 1x1 conv where the channels change).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.layers import ConvBNReLU, GlobalAvgPool
from plato.models.registry import MAX_BLOCKS, register_family


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pool: bool, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if residual:
            self.shortcut = (nn.Identity() if cin == cout
                             else nn.Conv2d(cin, cout, 1, bias=False))
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        if self.residual:
            out = out + self.shortcut(x)
        return self.pool(self.act(out))


class CNN(nn.Module):
    def __init__(self, depth: int, num_classes: int, in_channels: int, width: int,
                 residual: bool) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels, width)
        self.num_blocks = depth - 1
        cin = width
        for k in range(1, depth):
            cout = width * 2 ** min(k, 2)
            setattr(self, f"block{k}", ConvBlock(cin, cout, pool=k <= 3, residual=residual))
            cin = cout
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(cin, num_classes)
        self.cut_blocks = ("stem", *[f"block{k}" for k in range(1, depth)], "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for k in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{k}")(x)
        return self.fc(self.pool(x))


@register_family(r"cnn-(\d+)", "cnn-N (N conv blocks)", ("cnn-2", "cnn-4", "cnn-6"))
def cnn(match: re.Match, num_classes, input_shape, width: int = 32,
        residual: bool = False) -> CNN:
    depth = int(match.group(1))
    if depth < 1 or width < 1:
        raise ModelError(f"cnn-{depth}: need at least one block and a positive width")
    if depth > MAX_BLOCKS:
        raise ModelError(f"cnn-{depth}: at most {MAX_BLOCKS} blocks (a deeper one would take "
                         "minutes to build and trace)")
    return CNN(depth, num_classes, input_shape[0], width, residual)
