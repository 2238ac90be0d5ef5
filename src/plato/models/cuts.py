"""Cut points: where a network can be cut into prefix and suffix with one tensor between them,
and the interface every mechanism that finds them gives (a `CutGraph`).

Two mechanisms, chosen by plato.models.graph.cut_graph: torch.fx (plato.models.traced), for any
model it can trace, and forward hooks (plato.models.hooks) for the others. A zoo model only adds
names: its `cut_blocks` lists the module paths whose outputs are the block-level points (stem,
blocks, pooled features).

Conventions: index 0 is the stem's output and the last point is the pre-logit feature vector.
`granularity="layer"` adds every cut point between those two (after each conv, BN,
activation, ...); a point that is also a block point keeps the block's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from plato.errors import ModelError
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
