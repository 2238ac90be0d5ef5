"""Stitch layers: a fixed shape adapter followed by a small trainable map.

Types: plato.stitch.registry holds them, one module each under plato.stitch.types
(bn-conv1x1-bn, conv1x1, convKxK, lowrank-R, mlp, plato; `list_stitch_types()`); each says
there how it is built, its parameter count, its closed form and which points it joins.

On vector cut points the same names mean the Linear equivalents (BatchNorm1d, Linear, ...).

Shape adapters: a conv activation is resized to the receiver's H x W (`area`, `bilinear` or
`nearest`) before the map; a conv activation feeding a vector point is average-pooled first.
Vector -> conv is declared not stitchable everywhere (a pooled vector has no layout to map
back; map-and-reshape would need C*H*W outputs, millions of parameters at early layers): such a
cell is NaN in every table, never 0.

Token points (tokens, dim) of transformers (plato.models.tokens): the patch tokens are a
(dim, gh, gw) map and go through the same adapters and maps as a conv activation (a grid of
another size is resized, a conv map is read as patch tokens and back), so every type works in
all four directions, CNN/ViT -> CNN/ViT. The prefix tokens (class, registers) have no place
on a grid: going to a conv point they are dropped; going to a vector point the sender's class
token is the vector under `class_token: map` (what a ViT pools), the mean of its patch tokens
otherwise (what a conv map's average pool gives). The receiver's prefix tokens, by the setting
`class_token` (StitchConfig; default `map`):

    map      the sender's own prefix tokens, through the same map as the patch tokens (where
             the sender has as many, and the map acts on each position alone; else `mean`)
    mean     the mean of the stitched patch tokens
    learned  trained tokens of their own (started at the receiver's mean prefix tokens)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plato.errors import PlatoError
from plato.models.tokens import TokenLayout, describe, infer_layout
from plato.stitch.closed_form import LinearFit, affine, standardised_affine
from plato.stitch.registry import (
    MapShape,
    ResamplingMap,
    resolve_stitch,
    stitch_types,
)

RESIZE_MODES = ("area", "bilinear", "nearest")
CLASS_TOKEN_POLICIES = ("map", "mean", "learned")


class NotStitchable(PlatoError):
    """This pair of cut points cannot be joined by this stitch type; the cell is NaN."""


# --------------------------------------------------------------------------------------------
# Adapters: fixed, no parameters
# --------------------------------------------------------------------------------------------

class Resize(nn.Module):
    def __init__(self, size: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.size, self.mode = tuple(size), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (hi, wi), (ho, wo) = x.shape[-2:], self.size
        if self.mode == "area" and hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
            return F.avg_pool2d(x, hi // ho)  # the same numbers, several times faster
        if self.mode == "area" and ho % hi == 0 and wo % wi == 0 and ho // hi == wo // wi:
            return F.interpolate(x, size=self.size, mode="nearest")  # area of one pixel each
        align = False if self.mode == "bilinear" else None
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=align)


class Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


def make_adapter(in_shape: tuple[int, ...], out_shape: tuple[int, ...], resize: str,
                 resamples: bool = False) -> nn.Module:
    """The fixed part: pool a map into a vector point, resize a map to the receiver's grid
    (unless the map `resamples` itself), else nothing."""
    if resize not in RESIZE_MODES:
        raise PlatoError(f"resize must be one of {RESIZE_MODES}, got '{resize}'")
    spatial_in, spatial_out = len(in_shape) == 3, len(out_shape) == 3
    if not spatial_in and spatial_out:
        raise NotStitchable(
            f"a vector {in_shape} cannot feed a spatial point {out_shape}: "
            "vector -> conv is not stitchable"
        )
    if spatial_in and not spatial_out:
        return Pool()
    if spatial_in and in_shape[1:] != out_shape[1:] and not resamples:
        return Resize(out_shape[1:], resize)
    return nn.Identity()


AFFINE_FORMS = (affine, standardised_affine)  # closed forms that write any affine map exactly


class Stitch(nn.Module):
    """adapter (fixed) -> map (trained). Maps an activation of `in_shape` to `out_shape`.

    A (tokens, dim) shape is a token point: `in_tokens` / `out_tokens` give its layout (the
    CutPoint's), else it is inferred from the number of tokens (plato.models.tokens).
    """

    def __init__(self, kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 resize: str = "area", class_token: str = "map",
                 in_tokens: TokenLayout | None = None,
                 out_tokens: TokenLayout | None = None) -> None:
        super().__init__()
        if class_token not in CLASS_TOKEN_POLICIES:
            raise PlatoError(f"class_token must be one of {', '.join(CLASS_TOKEN_POLICIES)}, "
                             f"got '{class_token}'")
        self.kind = kind
        self.type, self.arg = resolve_stitch(kind)  # plato.stitch.registry
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.resize = resize
        self.in_tokens = _layout(self.in_shape, in_tokens)
        self.out_tokens = _layout(self.out_shape, out_tokens)
        # What the adapter and map see: a token point's patch grid (dim, gh, gw), or, from
        # tokens into a vector point, the sender's pooled vector (dim,).
        in_core = self.in_shape
        if self.in_tokens is not None:
            dim = self.in_shape[1]
            in_core = (dim,) if len(self.out_shape) == 1 else self.in_tokens.grid_shape(dim)
        out_core = self.out_shape if self.out_tokens is None else \
            self.out_tokens.grid_shape(self.out_shape[1])
        self.in_core, self.out_core = in_core, out_core
        self.spatial = len(out_core) == 3
        if len(in_core) == 1 and self.out_tokens is not None:
            raise NotStitchable(f"a vector {in_shape} cannot feed a token point "
                                f"({describe(self.out_shape, self.out_tokens)}): vector -> "
                                "tokens is not stitchable")
        self.adapter = make_adapter(in_core, out_core, resize, self.type.resamples)
        shape = MapShape(in_core[0], out_core[0], self.spatial,
                         in_core[1:] if len(in_core) == 3 else None,
                         out_core[1:] if self.spatial else None)
        refused = self.type.why_not(shape, self.arg)
        if refused:
            raise NotStitchable(f"{kind} {refused}")
        self.map = self.type.build(shape, self.arg)
        self.class_token = class_token
        self.prefix_mode = self._prefix_mode(class_token)
        if self.prefix_mode == "learned":  # (1, prefix, dim), set by the fit
            self.prefix_tokens = nn.Parameter(torch.zeros(1, self.out_tokens.prefix,
                                                          self.out_shape[1]))

    def _prefix_mode(self, policy: str) -> str | None:
        """How the receiver's prefix tokens are made (None: it has none)."""
        if self.out_tokens is None or self.out_tokens.prefix == 0:
            return None
        if policy == "map":
            same = self.in_tokens is not None and self.in_tokens.prefix == self.out_tokens.prefix
            return "map" if same and self.pointwise else "mean"
        return policy

    # -- the token policy: a token point as a grid (and prefix), and back --------------------

    def _read(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sender activation as the map's input, and its prefix tokens (B, prefix, D)
        where the map carries them to the receiver's."""
        if self.in_tokens is None:
            return x, None
        grid, prefix = self.in_tokens.split(x)
        if len(self.in_core) == 1:  # tokens into a vector point
            if self.class_token == "map" and self.in_tokens.prefix:
                return prefix[:, 0], None  # the class token
            return grid.mean(dim=(2, 3)), None
        return grid, (prefix if self.prefix_mode == "map" else None)

    def _strip(self, grid: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Prefix tokens and a grid side by side as one row of positions, for a map that acts
        on each position alone: (B, C, 1, prefix + H*W)."""
        return torch.cat([prefix.transpose(1, 2), grid.flatten(2)], 2).unsqueeze(2)

    def _write(self, y: torch.Tensor) -> torch.Tensor:
        """The map's output in the receiver's form (tokens where it is a token point)."""
        if self.out_tokens is None:
            return y
        if self.prefix_mode is None:
            return self.out_tokens.join(y)
        patches = self.out_tokens.join(y)  # (B, gh*gw, D)
        if self.prefix_mode == "learned":
            prefix = self.prefix_tokens.expand(len(y), -1, -1)
        else:  # mean of the stitched patch tokens
            prefix = patches.mean(1, keepdim=True).expand(-1, self.out_tokens.prefix, -1)
        return torch.cat([prefix, patches], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, prefix = self._read(x)
        if prefix is not None:  # prefix tokens through the same per-position map
            y = self.map(self._strip(self.adapter(x), prefix))  # (B, C_out, 1, prefix + H*W)
            return y.squeeze(2).transpose(1, 2)  # (B, T, C_out): prefix first, then patches
        k = self.replication
        if k > 1 and self.pointwise:
            # A per-position map commutes with repeating positions: map the sender's own grid,
            # then repeat the (usually much narrower) output: k*k times less work, the same
            # values (in train mode BatchNorm sees the same batch mean and variance; only its
            # running variance's n/(n-1) correction uses the smaller n).
            return F.interpolate(self.map(x), scale_factor=k, mode="nearest")
        return self._write(self.map(self.adapter(x)))

    @property
    def pointwise(self) -> bool:
        """The map acts on each position alone (1x1 convs, BatchNorm, ReLU; a resampling map
        only where the grids agree)."""
        return self.type.pointwise and not (self.type.resamples
                                            and self.in_core[1:] != self.out_core[1:])

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def is_linear(self) -> bool:
        return self.type.linear

    # -- closed form: the map seen as Y = X W + b over rows of a design matrix ---------------

    def require_linear(self) -> None:
        if not self.is_linear:
            linear = ", ".join(t.name for t in stitch_types() if t.linear)
            raise PlatoError(f"lstsq needs a linear stitch ({linear}), not '{self.kind}'")

    def require_affine(self) -> None:
        """translate writes an affine map: a type that holds any affine map exactly."""
        if self.type.closed_form not in AFFINE_FORMS:
            affine = ", ".join(t.name for t in stitch_types() if t.closed_form in AFFINE_FORMS)
            raise PlatoError(f"translate writes an affine map into the stitch: use {affine}, "
                             f"not '{self.kind}'")

    @property
    def design_key(self) -> tuple:
        """Stitches with equal keys build equal design rows from the same activation."""
        resampling = (self.map.up, self.map.patch) if isinstance(self.map, ResamplingMap) \
            else None
        return (self.in_shape, self.out_shape[1:] if self.spatial else None, self.resize,
                resampling, self.type.resamples, self.in_tokens, self.out_tokens, self.prefix_mode,
                self.class_token if self.in_tokens is not None else None)

    @property
    def targets_key(self) -> bool:
        """Stitches into one receiver point with equal keys take the same target rows (a
        token point's rows hold its prefix tokens where the map makes them)."""
        return self.out_tokens is not None and self.prefix_mode == "map"

    @property
    def replication(self) -> int:
        """k > 1 when the adapter repeats each sender position in a k x k block (an integer
        `nearest` or `area` upsampling, or the plato adapter's): the design rows are then
        the sender's own rows, each k*k times, and statistics can be formed on its grid."""
        if not self.spatial or len(self.in_shape) != 3 or self.out_tokens is not None:
            return 1
        if isinstance(self.map, ResamplingMap):
            return self.map.up
        if isinstance(self.adapter, Resize) and self.adapter.mode in ("area", "nearest"):
            (hi, wi), (ho, wo) = self.in_shape[1:], self.out_shape[1:]
            if ho % hi == 0 and wo % wi == 0 and ho // hi == wo // wi:
                return ho // hi
        return 1

    def coarse_design(self, a: torch.Tensor) -> torch.Tensor:
        """The sender's rows on its own grid, (B*h*w, C): `design` without the replication."""
        return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])  # (B, C, h, w) -> (B*h*w, C)

    def design(self, a: torch.Tensor) -> torch.Tensor:
        """Rows the linear map acts on: (N, d_in) from a sender batch."""
        a, prefix = self._read(a)
        x = self.adapter(a)
        if prefix is not None:  # (B, C, 1, prefix + H*W) -> (B*(prefix + H*W), C)
            strip = self._strip(x, prefix)
            return strip.flatten(2).transpose(1, 2).reshape(-1, strip.shape[1])
        if not self.spatial:
            return x  # (B, C)
        if isinstance(self.map, ResamplingMap):
            return self.map.design_rows(x)
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # (B, C, H, W) -> (B*H*W, C)

    def targets(self, t: torch.Tensor) -> torch.Tensor:
        """The receiver activation in the same row layout: (N, d_out)."""
        if self.out_tokens is not None:  # prefix tokens where the map makes them, patches
            rows = t if self.prefix_mode == "map" else t[:, self.out_tokens.prefix:]
            return rows.reshape(-1, t.shape[2])  # (B, T, D) -> (B*T, D)
        if not self.spatial:
            return t
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # (B, C, H, W) -> (B*H*W, C)

    def set_affine(self, fit: LinearFit) -> None:
        """Make the map compute design rows @ fit.weight + fit.bias, through its type's closed
        form (plato.stitch.closed_form)."""
        self.require_linear()
        self.type.closed_form(self.map, fit)

    @torch.no_grad()
    def match_output_moments(self, a: torch.Tensor, t: torch.Tensor) -> None:
        """Data-dependent start: rescale the last layer so that, on the sender batch `a`, each
        output channel has the mean and std of the receiver's own activation `t`.

        A freshly initialised stitch emits zero-mean, unit-scale values where the receiver
        expects (often large, non-negative) activations; at lr 1e-3 the optimiser needs many
        steps just to shift and scale them.
        """
        if self.out_tokens is not None:  # per channel over the tokens the map makes
            if self.prefix_mode == "learned":
                self.prefix_tokens.copy_(t[:, :self.out_tokens.prefix].mean(0, keepdim=True))
            t = self.targets(t)  # (B*T, D) rows
        dims = (0, 2, 3) if self.spatial and self.out_tokens is None else (0,)
        mu_r, sd_r = t.mean(dims).double(), t.std(dims).double()
        if hasattr(self.map, "match_moments"):  # a constrained map keeps its constraint
            out = self(a) if self.out_tokens is None else self.targets(self(a))
            self.map.match_moments(out.mean(dims).double(), out.std(dims).double(), mu_r, sd_r)
            return
        layers = [m for m in self.map.modules()  # the last of them makes the output
                  if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.Linear | nn.Conv2d)]
        if not layers:  # a map of another kind (a registered type's own) starts as built
            return
        last = layers[-1]
        if isinstance(last, nn.BatchNorm1d | nn.BatchNorm2d):
            # In train mode the BN outputs weight * (standardised) + bias.
            last.weight.copy_(sd_r.to(last.weight.dtype))
            last.bias.copy_(mu_r.to(last.bias.dtype))
            last.running_mean.copy_(mu_r.to(last.running_mean.dtype))
            last.running_var.copy_((sd_r ** 2).to(last.running_var.dtype))
            return
        out = self(a) if self.out_tokens is None else self.targets(self(a))
        mu_s, sd_s = out.mean(dims).double(), out.std(dims).double()
        scale = torch.where(sd_s > 1e-12, sd_r / sd_s.clamp_min(1e-12), torch.ones_like(sd_s))
        shape = (-1,) + (1,) * (last.weight.ndim - 1)
        last.weight.mul_(scale.view(shape).to(last.weight.dtype))
        bias = last.bias.double() if last.bias is not None else torch.zeros_like(mu_s)
        if last.bias is not None:
            last.bias.copy_(((bias - mu_s) * scale + mu_r).to(last.bias.dtype))

    @torch.no_grad()
    def init_identity(self) -> None:
        """The identity map (same shape in and out), exact in eval mode."""
        if self.in_shape != self.out_shape or self.type.identity is None \
                or self.in_tokens != self.out_tokens:
            raise PlatoError(f"an identity {self.kind} stitch needs equal shapes and a linear type")
        if self.prefix_mode not in (None, "map"):
            raise PlatoError(f"an identity stitch carries the class token through its map; with "
                             f"class_token '{self.class_token}' and {self.kind} it does not")
        self.type.identity(self.map, self.in_core[0])


def _layout(shape: tuple[int, ...], given: TokenLayout | None) -> TokenLayout | None:
    """A token point's layout (given, or inferred from its number of tokens); None for
    conv and vector points. A token point without a grid cannot be stitched."""
    if len(shape) != 2:
        return None
    layout = given or infer_layout(shape[0])
    if layout is None or layout.tokens != shape[0]:
        raise NotStitchable(f"a token point of {shape[0]} tokens (dim {shape[1]}) has no patch "
                            "grid, so it cannot be stitched: give the model "
                            "`num_prefix_tokens` and `patch_embed.grid_size`, as timm's ViTs "
                            "have")
    return layout
