"""Stitch layers: a fixed shape adapter followed by a small trainable map.

Types (one registry; each reports its parameter count):

    bn-conv1x1-bn   BatchNorm, 1x1 conv with bias, BatchNorm (Bansal, Nakkiran & Barak 2021);
                    the default for conv -> conv
    conv1x1         a 1x1 conv with bias: affine per position
    convKxK         a KxK conv (odd K, same padding), e.g. conv3x3
    lowrank-R       1x1 conv to R channels, then 1x1 conv with bias: rank <= R
    mlp             1x1 conv, ReLU, 1x1 conv (hidden width max(C_in, C_out))
    plato           the original Plato study's adapters: a k x k conv with stride k where the
                    receiver is k times smaller, nearest upsampling by k then a 1x1 conv where
                    it is k times larger, a 1x1 conv where sizes agree

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

import re

import torch
import torch.nn.functional as F
from torch import nn

from plato.errors import PlatoError
from plato.models.tokens import TokenLayout, describe, infer_layout

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
                 kind: str) -> nn.Module:
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
    if spatial_in and in_shape[1:] != out_shape[1:] and kind != "plato":
        return Resize(out_shape[1:], resize)
    return nn.Identity()


# --------------------------------------------------------------------------------------------
# Maps: the trainable part. Each builder gets (c_in, c_out, spatial, in_hw, out_hw, arg).
# --------------------------------------------------------------------------------------------

def _affine(cin: int, cout: int, spatial: bool, bias: bool = True) -> nn.Module:
    return nn.Conv2d(cin, cout, 1, bias=bias) if spatial else nn.Linear(cin, cout, bias=bias)


def _bn(c: int, spatial: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if spatial else nn.BatchNorm1d(c)


class PlatoAdapter(nn.Module):
    """The original study's learned resampling: strided k x k conv down, nearest + 1x1 up."""

    def __init__(self, cin: int, cout: int, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        (hi, wi), (ho, wo) = in_hw, out_hw
        self.up = 1
        if (hi, wi) == (ho, wo):
            self.conv = nn.Conv2d(cin, cout, 1)
        elif hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
            k = hi // ho
            self.conv = nn.Conv2d(cin, cout, k, stride=k)
        elif ho % hi == 0 and wo % wi == 0 and ho // hi == wo // wi:
            self.up = ho // hi
            self.conv = nn.Conv2d(cin, cout, 1)
        else:
            raise NotStitchable(f"plato adapters need an integer scale between {in_hw} and "
                                f"{out_hw}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up > 1:  # a 1x1 conv commutes with repetition: convolve first, repeat after
            return F.interpolate(self.conv(x), scale_factor=self.up, mode="nearest")
        return self.conv(x)


def _build_map(kind: str, cin: int, cout: int, spatial: bool, in_hw, out_hw) -> nn.Module:
    if kind == "bn-conv1x1-bn":
        return nn.Sequential(_bn(cin, spatial), _affine(cin, cout, spatial), _bn(cout, spatial))
    if kind == "conv1x1":
        return _affine(cin, cout, spatial)
    if kind == "mlp":
        hidden = max(cin, cout)
        return nn.Sequential(_affine(cin, hidden, spatial), nn.ReLU(),
                             _affine(hidden, cout, spatial))
    if kind == "plato":
        return PlatoAdapter(cin, cout, in_hw, out_hw) if spatial else _affine(cin, cout, False)
    m = re.fullmatch(r"lowrank-(\d+)", kind)
    if m:
        rank = int(m.group(1))
        if rank < 1:
            raise PlatoError(f"{kind}: the rank must be at least 1")
        return nn.Sequential(_affine(cin, rank, spatial, bias=False),
                             _affine(rank, cout, spatial))
    m = re.fullmatch(r"conv(\d+)x(\d+)", kind)
    if m and m.group(1) == m.group(2) and int(m.group(1)) % 2 == 1:
        if not spatial:
            raise NotStitchable(f"{kind} needs spatial cut points; use conv1x1 for vectors")
        k = int(m.group(1))
        return nn.Conv2d(cin, cout, k, padding=k // 2)
    raise PlatoError(f"unknown stitch type '{kind}': choose one of {', '.join(STITCH_TYPES)}")


STITCH_TYPES = ("bn-conv1x1-bn", "conv1x1", "convKxK", "lowrank-R", "mlp", "plato")
LINEAR_TYPES = ("bn-conv1x1-bn", "conv1x1", "lowrank-R", "plato")  # fit by lstsq


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
        self.adapter = make_adapter(in_core, out_core, resize, kind)
        in_hw = in_core[1:] if len(in_core) == 3 else None
        out_hw = out_core[1:] if self.spatial else None
        self.map = _build_map(kind, in_core[0], out_core[0], self.spatial, in_hw, out_hw)
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
            per_position = self.pointwise and not (
                isinstance(self.map, PlatoAdapter) and self.in_core[1:] != self.out_core[1:])
            return "map" if same and per_position else "mean"
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
        if k > 1 and self.pointwise and not isinstance(self.map, PlatoAdapter):
            # A per-position map commutes with repeating positions: map the sender's own grid,
            # then repeat the (usually much narrower) output: k*k times less work, the same
            # values (in train mode BatchNorm sees the same batch mean and variance; only its
            # running variance's n/(n-1) correction uses the smaller n).
            return F.interpolate(self.map(x), scale_factor=k, mode="nearest")
        return self._write(self.map(self.adapter(x)))

    @property
    def pointwise(self) -> bool:
        """The map acts on each position alone (1x1 convs, BatchNorm, ReLU)."""
        return not re.fullmatch(r"conv(\d+)x\1", self.kind) or self.kind == "conv1x1"

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def is_linear(self) -> bool:
        return self.kind in ("bn-conv1x1-bn", "conv1x1", "plato") or self.kind.startswith(
            "lowrank-")

    # -- closed form: the map seen as Y = X W + b over rows of a design matrix ---------------

    def require_linear(self) -> None:
        if not self.is_linear:
            raise PlatoError(
                f"lstsq needs a linear stitch ({', '.join(LINEAR_TYPES)}), not '{self.kind}'"
            )

    @property
    def design_key(self) -> tuple:
        """Stitches with equal keys build equal design rows from the same activation."""
        plato = (self.map.up, self.map.conv.kernel_size) if isinstance(self.map, PlatoAdapter) \
            else None
        return (self.in_shape, self.out_shape[1:] if self.spatial else None, self.resize, plato,
                self.kind == "plato", self.in_tokens, self.out_tokens, self.prefix_mode,
                self.class_token if self.in_tokens is not None else None)

    @property
    def replication(self) -> int:
        """k > 1 when the adapter repeats each sender position in a k x k block (an integer
        `nearest` or `area` upsampling, or the plato adapter's): the design rows are then
        the sender's own rows, each k*k times, and statistics can be formed on its grid."""
        if not self.spatial or len(self.in_shape) != 3 or self.out_tokens is not None:
            return 1
        if isinstance(self.map, PlatoAdapter):
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
        if self.kind == "plato" and isinstance(self.map, PlatoAdapter):
            conv = self.map.conv
            if self.map.up > 1:
                x = F.interpolate(x, scale_factor=self.map.up, mode="nearest")
            k = conv.kernel_size[0]
            if k > 1:  # non-overlapping k x k patches: (B, C*k*k, L) -> (B*L, C*k*k)
                cols = F.unfold(x, k, stride=k)
                return cols.transpose(1, 2).reshape(-1, cols.shape[1])
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # (B, C, H, W) -> (B*H*W, C)

    def targets(self, t: torch.Tensor) -> torch.Tensor:
        """The receiver activation in the same row layout: (N, d_out)."""
        if self.out_tokens is not None:  # prefix tokens where the map makes them, patches
            rows = t if self.prefix_mode == "map" else t[:, self.out_tokens.prefix:]
            return rows.reshape(-1, t.shape[2])  # (B, T, D) -> (B*T, D)
        if not self.spatial:
            return t
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # (B, C, H, W) -> (B*H*W, C)

    @torch.no_grad()
    def set_affine(self, weight: torch.Tensor, bias: torch.Tensor, x_mean: torch.Tensor,
                   x_cov: torch.Tensor) -> None:
        """Make the map compute rows @ weight + bias (weight: (d_in, d_out)).

        `x_mean` and `x_cov` are the design rows' mean and covariance. BatchNorms are set so
        that the first standardises its input and the second undoes its own normalisation, in
        train and eval mode alike, so a task phase can start from the closed form.
        """
        self.require_linear()
        w, b = weight.double(), bias.double()
        mu, cov = x_mean.double(), x_cov.double()
        mean_y = mu @ w + b  # mean of the fitted values
        if self.kind == "bn-conv1x1-bn":
            bn1, lin, bn2 = self.map
            sd = torch.sqrt(torch.diagonal(cov) + bn1.eps)
            _set_bn(bn1, mean=mu, var=torch.diagonal(cov), weight=torch.ones_like(sd),
                    bias=torch.zeros_like(sd))
            # x @ w + b == ((x - mu) / sd) @ (sd * w) + mean_y
            _copy_linear(lin, sd[:, None] * w, mean_y)
            var_y = torch.einsum("io,ij,jo->o", w, cov, w)  # diag(w^T cov w)
            sd_y = torch.sqrt(var_y + bn2.eps)
            _set_bn(bn2, mean=mean_y, var=var_y, weight=sd_y, bias=mean_y)
        elif self.kind.startswith("lowrank-"):
            first, second = self.map
            rank = first.out_channels if self.spatial else first.out_features
            # Reduced-rank regression: project the centred fitted values onto their top-R
            # principal axes V: y = x w V V^T + (mean_y - mu w V V^T).
            axes = torch.linalg.eigh(w.T @ cov @ w).eigenvectors.flip(1)[:, :rank]  # (d_out, R)
            if axes.shape[1] < rank:  # more rank than outputs: the extra units stay silent
                axes = torch.cat([axes, axes.new_zeros(axes.shape[0], rank - axes.shape[1])], 1)
            _copy_linear(first, w @ axes, None)
            _copy_linear(second, axes.T, mean_y - (mu @ w @ axes) @ axes.T)
        elif isinstance(self.map, PlatoAdapter):
            _copy_linear(self.map.conv, w, b)
        else:
            _copy_linear(self.map, w, b)

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
        last = self.map[-1] if isinstance(self.map, nn.Sequential) else self.map
        if isinstance(last, PlatoAdapter):
            last = last.conv
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
        if self.in_shape != self.out_shape or self.kind in ("mlp",) \
                or self.in_tokens != self.out_tokens:
            raise PlatoError(f"an identity {self.kind} stitch needs equal shapes and a linear type")
        if self.prefix_mode not in (None, "map"):
            raise PlatoError(f"an identity stitch carries the class token through its map; with "
                             f"class_token '{self.class_token}' and {self.kind} it does not")
        c = self.in_core[0]
        eye = torch.eye(c, dtype=torch.float64)
        zero = torch.zeros(c, dtype=torch.float64)
        if self.kind.startswith("conv") and self.kind != "conv1x1":
            conv = self.map
            conv.weight.zero_()
            k = conv.kernel_size[0]
            conv.weight[:, :, k // 2, k // 2] = torch.eye(c)
            conv.bias.zero_()
            return
        if self.kind.startswith("lowrank-"):
            first, second = self.map
            rank = first.out_channels if self.spatial else first.out_features
            if rank < c:
                raise PlatoError(f"{self.kind} has rank {rank} < {c}: it cannot be the identity")
            _copy_linear(first, torch.eye(c, rank, dtype=torch.float64), None)
            _copy_linear(second, torch.eye(rank, c, dtype=torch.float64), zero)
            return
        if self.kind == "bn-conv1x1-bn":
            bn1, lin, bn2 = self.map
            for bn in (bn1, bn2):  # (x - 0) / sqrt((1 - eps) + eps) * 1 + 0 == x exactly
                _set_bn(bn, mean=zero, var=torch.full((c,), 1 - bn.eps, dtype=torch.float64),
                        weight=torch.ones(c, dtype=torch.float64), bias=zero)
            _copy_linear(lin, eye, zero)
            return
        target = self.map.conv if isinstance(self.map, PlatoAdapter) else self.map
        _copy_linear(target, eye, zero)


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


def _copy_linear(layer: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> None:
    """Set a Linear or conv layer to rows @ w + b; w is (d_in, d_out) in design-row order."""
    weight = w.T.to(layer.weight.dtype)  # (d_out, d_in)
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    if layer.bias is not None:
        layer.bias.copy_(b.to(layer.bias.dtype) if b is not None else 0)


def _set_bn(bn: nn.Module, mean, var, weight, bias) -> None:
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))
    bn.weight.copy_(weight.to(bn.weight.dtype))
    bn.bias.copy_(bias.to(bn.bias.dtype))


