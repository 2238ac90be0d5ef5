"""`vit-tiny`, `vit-small`: Vision Transformers (Dosovitskiy et al. 2021) for small images.

Written here because timm cannot be imported on CPU-only torch builds (it imports
torchvision); the module names, parameter names and layout are timm's `VisionTransformer`'s
(`patch_embed.proj`, `cls_token`, `reg_token`, `pos_embed`, `blocks.N.norm1`,
`blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1`,
`blocks.N.mlp.fc2`, `norm`, `head`), so a timm user finds their way and a timm state dict
with the same sizes loads by name (`plato import`, `load_weights`).

    tiny    dim 192, 3 heads, 12 blocks (timm's vit_tiny)
    small   dim 384, 6 heads, 12 blocks (timm's vit_small)

Options: `patch_size` (4: a 32 px image is an 8 x 8 grid of 64 patch tokens), `depth`,
`dim`, `heads`, `mlp_ratio`, `class_token`, `reg_tokens` (register tokens, Darcet et al.
2024), `global_pool` (`token`: the class token, timm's default; `avg`: the mean of the patch
tokens), `dropout`.

Cut points: `patch_embed` (the patch tokens, (N, dim), before the class token and position
embedding), `blocks.0` ... (every block's output, (prefix + N, dim): the class token and
registers first, then the patches in row-major grid order) and `pool` (the pooled pre-logit
vector, after the final norm). The logits are `head`, as in timm. The model says how its
tokens are laid out (`num_prefix_tokens`, `patch_embed.grid_size`, as timm's do): stitches
and measures read the layout from there (plato.models.tokens).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from plato.errors import ModelError
from plato.models.registry import register_family

SIZES = {"tiny": (192, 3), "small": (384, 6)}  # dim, heads (timm's)
DEPTH = 12
LAYER_NORM_EPS = 1e-6  # timm's


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: (B, C, H, W) -> (B, gh * gw, dim), row-major."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, image_hw: tuple[int, int]):
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = (image_hw[0] // patch_size, image_hw[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, dim, gh, gw) -> (B, gh*gw, dim)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, 3*dim) -> (3, B, heads, T, dim/heads)
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).flatten(2))  # (B, T, heads, dim/heads) -> (B, T, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenPool(nn.Module):
    """(B, T, dim) -> (B, dim): the class token, or the mean of the patch tokens. No
    parameters (timm pools in a method; a module makes the pooled vector a cut point)."""

    def __init__(self, kind: str, num_prefix_tokens: int) -> None:
        super().__init__()
        self.kind, self.num_prefix_tokens = kind, num_prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "token":
            return x[:, 0]
        return x[:, self.num_prefix_tokens:].mean(1)


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], patch_size: int,
                 dim: int, depth: int, heads: int, mlp_ratio: float, class_token: bool,
                 reg_tokens: int, global_pool: str, dropout: float) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(input_shape[0], dim, patch_size, input_shape[1:])
        self.num_prefix_tokens = int(class_token) + reg_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, dim)) if reg_tokens else None
        tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pool = TokenPool(global_pool, self.num_prefix_tokens)
        self.head = nn.Linear(dim, num_classes)
        self.cut_blocks = ("patch_embed", *(f"blocks.{i}" for i in range(depth)), "pool")
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's: truncated normal (std 0.02) for linear weights and the prefix tokens
        # (class token std 1e-6), zero biases.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)

    def no_weight_decay(self) -> set[str]:
        """Parameters training leaves undecayed (timm's method and names)."""
        return {"pos_embed", "cls_token", "reg_token"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token)
                  if t is not None]
        x = self.pos_drop(torch.cat([*prefix, x], dim=1) + self.pos_embed)
        x = self.norm(self.blocks(x))
        return self.head(self.pool(x))


@register_family(r"vit-(tiny|small)", "vit-tiny|small (patch_size, depth, dim, heads)",
                 ("vit-tiny", "vit-small"))
def vit(match: re.Match, num_classes, input_shape, patch_size: int = 4, depth: int = DEPTH,
        dim: int | None = None, heads: int | None = None, mlp_ratio: float = 4.0,
        class_token: bool = True, reg_tokens: int = 0, global_pool: str = "token",
        dropout: float = 0.0) -> VisionTransformer:
    name = match.group(0)
    default_dim, default_heads = SIZES[match.group(1)]
    dim, heads = dim or default_dim, heads or default_heads
    h, w = input_shape[1:]
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ModelError(f"{name}: patch_size {patch_size} must divide the image size {h} x {w}")
    if depth < 1 or dim < 1 or heads < 1 or dim % heads:
        raise ModelError(f"{name}: depth, dim and heads must be positive and heads must divide "
                         f"dim (dim {dim}, heads {heads})")
    if global_pool not in ("token", "avg"):
        raise ModelError(f"{name}: global_pool must be 'token' or 'avg', got '{global_pool}'")
    if global_pool == "token" and not class_token:
        raise ModelError(f"{name}: global_pool 'token' needs class_token=True (or use 'avg')")
    if reg_tokens < 0 or not 0 <= dropout < 1 or mlp_ratio <= 0:
        raise ModelError(f"{name}: reg_tokens must be >= 0, dropout in [0, 1), mlp_ratio > 0")
    return VisionTransformer(num_classes, input_shape, patch_size, dim, depth, heads, mlp_ratio,
                             class_token, reg_tokens, global_pool, dropout)
