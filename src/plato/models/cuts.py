"""Cut points: where a network can be cut into prefix and suffix with one tensor between them,
and the interface every mechanism that finds them gives (a `CutGraph`).

Two mechanisms, chosen by plato.models.graph.cut_graph: torch.fx (plato.models.traced), for any
model it can trace, and forward hooks (plato.models.hooks) for the others. A zoo model only adds
names: its `cut_blocks` lists the module paths whose outputs are the block-level points (stem,
blocks, pooled features).

A model without `cut_blocks` (a library's, a user's) gets block-level points at the outputs of
its top-level children, with lists of blocks opened (`block_paths`).

Conventions: index 0 is the stem's output and the last point is the pre-logit feature vector.
`granularity="layer"` adds every cut point between those two (after each conv, BN,
activation, ...); a point that is also a block point keeps the block's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.inputs import INPUT_MODULE
from plato.models.tokens import TokenLayout

GRANULARITIES = ("block", "layer")


@dataclass(frozen=True)
class CutPoint:
    name: str
    index: int
    shape: tuple[int, ...]  # the activation's shape without the batch dimension
    node: str  # the fx node that produces it
    tokens: TokenLayout | None = None  # a (tokens, dim) point's layout (plato.models.tokens)

    @property
    def is_spatial(self) -> bool:
        return len(self.shape) == 3  # (C, H, W)

    @property
    def channels(self) -> int:
        return self.shape[-1] if len(self.shape) == 2 else self.shape[0]  # (T, D): D

    def to_dict(self) -> dict:
        out = {"name": self.name, "index": self.index, "shape": list(self.shape)}
        if self.tokens is not None:
            out["tokens"] = self.tokens.to_dict()
        return out


class CutGraph:
    """A model's cut points and exact splits at any of them: what every mechanism gives. Build
    one with plato.models.cut_graph (it chooses the mechanism).

    The prefix and suffix modules share the model's parameters and buffers (no copies).
    """

    mechanism = ""  # how the points were found: "torch.fx" or "forward hooks"

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None) -> None:
        self.model = model
        self.input_shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
        if not self.input_shape:
            raise ModelError("this model has no input_shape: pass input_shape=(C, H, W)")
        self._points: dict[str, list[CutPoint]] = {}  # by granularity, set by the mechanism

    # -- queries ----------------------------------------------------------------------------

    def points(self, granularity: str = "block") -> list[CutPoint]:
        if granularity not in GRANULARITIES:
            raise ModelError(f"granularity must be one of {GRANULARITIES}, got '{granularity}'")
        return list(self._points[granularity])

    def point(self, point: str | int | CutPoint, granularity: str = "block") -> CutPoint:
        """Resolve a point given by name (any granularity) or index (in `granularity`)."""
        if isinstance(point, CutPoint):
            return point
        pts = self.points(granularity)
        if isinstance(point, str) and point.lstrip("-").isdigit():
            point = int(point)
        if isinstance(point, int):
            if not -len(pts) <= point < len(pts):
                raise ModelError(
                    f"cut point index {point} is out of range: this model has {len(pts)} "
                    f"{granularity}-level points (0 to {len(pts) - 1})"
                )
            return pts[point]
        for p in pts + self.points("layer"):
            if p.name == point:
                return p
        names = ", ".join(p.name for p in pts)
        raise ModelError(f"no cut point named '{point}': the {granularity} points are {names}")

    # -- surgery: each mechanism's own -------------------------------------------------------

    def split(self, point: str | int | CutPoint,
              granularity: str = "block") -> tuple[nn.Module, nn.Module]:
        """(prefix, suffix) with suffix(prefix(x)) == model(x), bit for bit; the same point
        gives the same two modules each time."""
        raise NotImplementedError

    def extract(self, points: list[str | int | CutPoint],
                granularity: str = "block") -> nn.Module:
        """A module returning {point name: activation} for several points from one pass."""
        raise NotImplementedError

    def tapped(self, points: list[str | int | CutPoint],
               granularity: str = "block") -> nn.Module:
        """The whole model, returning (its output, {point name: activation}) from one pass."""
        raise NotImplementedError


def block_paths(model: nn.Module) -> list[str]:
    """The modules whose outputs are a user model's block-level points: its top-level children,
    with three kinds opened:
    - a list of blocks (an nn.Sequential or nn.ModuleList of two or more modules that have
      modules of their own: residual blocks, transformer blocks, stages) into its blocks;
    - a child that wraps one such list (torchvision's ViT encoder) into the list's blocks, then
      itself;
    - a stack of layers (a list of plain layers holding two or more convolutions or linear
      maps: VGG's `features`) into its units, each ending where the next conv or linear map
      begins (conv, BN, ReLU, pool: the pool's output). A list with one (a conv, BN and ReLU
      in a row) stays one point."""
    def blocks(module: nn.Module) -> bool:
        return (isinstance(module, nn.Sequential | nn.ModuleList) and len(module) >= 2
                and all(any(True for _ in c.children()) for c in module))

    def starts_unit(module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return isinstance(weight, torch.Tensor) and weight.dim() >= 2  # a conv or linear map

    def unit_ends(name: str, stack: nn.Module) -> list[str] | None:
        if not isinstance(stack, nn.Sequential | nn.ModuleList) or blocks(stack):
            return None
        children = list(stack.named_children())
        starts = [i for i, (_, c) in enumerate(children) if starts_unit(c)]
        if len(starts) < 2:
            return None
        ends = [s - 1 for s in starts[1:] if s > 0] + [len(children) - 1]
        return [f"{name}.{children[i][0]}" for i in ends]

    paths = []
    for name, child in model.named_children():
        if isinstance(child, nn.Identity) or name == INPUT_MODULE:  # nothing, or the input's
            continue  # renormalisation (plato.models.inputs): no point of the network
        inner = [(n, c) for n, c in child.named_children() if blocks(c)]
        if blocks(child):
            paths += [f"{name}.{i}" for i, _ in child.named_children()]
        elif len(inner) == 1:
            paths += [f"{name}.{inner[0][0]}.{i}" for i, _ in inner[0][1].named_children()]
            paths.append(name)
        else:
            paths += unit_ends(name, child) or [name]
    return paths
