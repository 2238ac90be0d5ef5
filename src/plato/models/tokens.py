"""Token representations: how a (tokens, dim) activation lays out its tokens.

A transformer's cut point holds `prefix` tokens first (a class token, register tokens), then
the patch tokens of a gh x gw grid in row-major order (timm's and the zoo ViT's layout). The
prefix tokens have no place on a grid; the patch tokens are a (dim, gh, gw) map, so a stitch
or a measure can treat them as a conv activation.

Where the layout comes from: the model's own `num_prefix_tokens` and `patch_embed.grid_size`
(timm's attributes; the zoo ViT has them), matched against the point's number of tokens
(the patch embedding's output has no prefix yet). A model without them: the smallest prefix
(0 to MAX_INFERRED_PREFIX) that leaves a square number of patch tokens. A token point whose
layout is found neither way has no grid: stitches refuse it, measures read its tokens flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MAX_INFERRED_PREFIX = 8  # a class token and up to 7 registers


@dataclass(frozen=True)
class TokenLayout:
    prefix: int  # class and register tokens, first
    grid: tuple[int, int]  # (gh, gw) patch tokens, row-major, after the prefix

    @property
    def tokens(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]

    def grid_shape(self, dim: int) -> tuple[int, int, int]:
        return (dim, *self.grid)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> the patch grid (B, D, gh, gw) and the prefix tokens (B, prefix, D)."""
        patches = x[:, self.prefix:].transpose(1, 2)  # (B, D, gh*gw)
        return patches.unflatten(2, self.grid), x[:, :self.prefix]

    def join(self, grid: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """The patch grid (B, D, gh, gw) and prefix tokens (B, prefix, D) -> (B, T, D)."""
        patches = grid.flatten(2).transpose(1, 2)  # (B, gh*gw, D)
        return patches if prefix is None else torch.cat([prefix, patches], 1)

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "grid": list(self.grid)}


def infer_layout(tokens: int) -> TokenLayout | None:
    """The smallest prefix leaving a square grid of patch tokens (none: None)."""
    for prefix in range(min(MAX_INFERRED_PREFIX, tokens - 1) + 1):
        side = math.isqrt(tokens - prefix)
        if side * side == tokens - prefix:
            return TokenLayout(prefix, (side, side))
    return None


def layout_of(model: nn.Module, shape: tuple[int, ...]) -> TokenLayout | None:
    """The layout of a point of `model` with activation `shape` (no batch dimension); None
    for anything that is not (tokens, dim)."""
    if len(shape) != 2:
        return None
    tokens = shape[0]
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None:
        gh, gw = (int(g) for g in grid)
        for prefix in (0, int(getattr(model, "num_prefix_tokens", 0) or 0)):
            if tokens == prefix + gh * gw:
                return TokenLayout(prefix, (gh, gw))
    return infer_layout(tokens)


def describe(shape: tuple[int, ...], layout: TokenLayout | None) -> str:
    """A point's shape in words, for messages."""
    if len(shape) != 2:
        return str(tuple(shape))
    if layout is None:
        return f"{shape[0]} tokens without a patch grid, dim {shape[1]}"
    prefix = f"{layout.prefix} prefix + " if layout.prefix else ""
    return f"{prefix}{layout.grid[0]}x{layout.grid[1]} patch tokens, dim {shape[1]}"
