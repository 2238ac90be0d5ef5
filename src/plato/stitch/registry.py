"""The stitch types, one registry (in the style of timm's `register_model`).

A stitch is a fixed shape adapter (plato.stitch.layers) followed by a trainable *map*. Each
type of map is declared once, in its own module under plato.stitch.types, by decorating its
builder:

    @register_stitch("lowrank-R", pattern=r"lowrank-(\\d+)", summary="...",
                     parameters=lambda s, rank: ..., closed_form=closed_form.reduced_rank,
                     identity=...)
    def lowrank(shape: MapShape, rank: int) -> nn.Module: ...

(plato.stitch imports them all, so they are registered wherever Plato is) and says there what
the rest of Plato asks of it: its builder, its parameter count (without
building it), its closed form for `lstsq` (if any), how it becomes the identity (if it can),
and which cut points it joins. (The `task` and `match` objectives start a map by rescaling
its last Linear, conv or BatchNorm layer to the receiver's moments; a map without one starts
as built.) Everything else (the CLI's help, spec validation, the report,
distillation adapters) lists and resolves the registered types; adding a type is one module
plus a test (tests/stitch/test_registry.py runs every check over every registered type).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from plato.errors import PlatoError


@dataclass(frozen=True)
class MapShape:
    """What a stitch's map joins, after the adapter: channels in and out, and whether it acts
    on maps (B, C, H, W) (token grids included) or on vectors (B, C)."""

    c_in: int
    c_out: int
    spatial: bool
    in_hw: tuple[int, int] | None = None  # the sender's grid (spatial maps)
    out_hw: tuple[int, int] | None = None  # the receiver's grid


# A type's functions, by what they are given: the map's shape and the name's argument (the R of
# lowrank-R; None for a name without one).
Builder = Callable[[MapShape, int | None], nn.Module]
Count = Callable[[MapShape, int | None], int]
Refusal = Callable[[MapShape, int | None], str | None]  # why it cannot join these shapes
Invalid = Callable[[int], str | None]  # why an argument makes no stitch (a rank of 0)
ClosedForm = Callable[[nn.Module, "LinearFit"], None]  # noqa: F821 (plato.stitch.closed_form)
Identity = Callable[[nn.Module, int], None]  # the map made the identity on C channels


@dataclass(frozen=True)
class StitchType:
    name: str  # as listed: "conv1x1", or "lowrank-R" for a family of names
    summary: str  # one line: what it is (the CLI's help, the report)
    build: Builder
    parameters: Count  # trainable parameters of the map, without building it
    pattern: str | None = None  # a family's names, its argument in the group: lowrank-(\d+)
    closed_form: ClosedForm | None = None  # lstsq: writes a least-squares fit into the map
    identity: Identity | None = None
    refuses: Refusal | None = None  # shapes it cannot join (None: any it is built for)
    invalid: Invalid | None = None  # arguments it refuses (None: any the pattern matches)
    vectors: bool = True  # joins vector points too (False: maps only)
    pointwise: bool = True  # acts on each position alone (1x1 convs, BatchNorm, ReLU)
    resamples: bool = False  # the map resamples between grids itself (ResamplingMap)
    starts_closed: bool = False  # its closed form chooses what SGD cannot (a matching):
    #                              only objectives that start from it (lstsq, lstsq+task)

    @property
    def linear(self) -> bool:
        """Fitted in closed form by `lstsq` (and started from it by `lstsq+task`)."""
        return self.closed_form is not None

    def why_not(self, shape: MapShape, arg: int | None) -> str | None:
        """Why this type cannot join `shape`, or None."""
        if not shape.spatial and not self.vectors:
            return "needs spatial cut points; use conv1x1 for vectors"
        return self.refuses(shape, arg) if self.refuses else None


class ResamplingMap(nn.Module):
    """A map that moves between grids itself (declared with `resamples=True`): no resize
    before it. For the closed form it says how it reads the sender: each design row is a
    k x k patch of it (`patch`), and each sender position feeds `up` x `up` receiver positions
    (`up`)."""

    up: int = 1
    patch: int = 1

    def design_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The rows its linear part acts on: (B, C, H, W) -> (N, C * patch^2)."""
        if self.up > 1:  # repeated positions, each its own row
            x = torch.nn.functional.interpolate(x, scale_factor=self.up, mode="nearest")
        if self.patch > 1:  # non-overlapping patches: (B, C*k*k, L) -> (B*L, C*k*k)
            cols = torch.nn.functional.unfold(x, self.patch, stride=self.patch)
            return cols.transpose(1, 2).reshape(-1, cols.shape[1])
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # (B, C, H, W) -> (B*H*W, C)


_REGISTRY: dict[str, StitchType] = {}  # the built-in types register as plato.stitch is imported
DEFAULT_STITCH = "bn-conv1x1-bn"  # the type of every entry point that is not told one


def register_stitch(name: str, *, summary: str, parameters: Count, pattern: str | None = None,
                    closed_form: ClosedForm | None = None, identity: Identity | None = None,
                    refuses: Refusal | None = None, invalid: Invalid | None = None,
                    vectors: bool = True,
                    pointwise: bool = True, resamples: bool = False,
                    starts_closed: bool = False) -> Callable[[Builder], Builder]:
    """Register the decorated builder as the stitch type `name` (see the module's text)."""

    def register(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"stitch type '{name}' is registered twice")
        _REGISTRY[name] = StitchType(name, summary, build, parameters, pattern, closed_form,
                                     identity, refuses, invalid, vectors, pointwise,
                                     resamples, starts_closed)
        return build

    return register


def unregister_stitch(name: str) -> None:
    """Remove a registered type (a type tried in a notebook or a test, then dropped)."""
    _REGISTRY.pop(name)


def list_stitch_types(pattern: str = "*") -> list[str]:
    """The registered types' names (a family as its pattern name, lowrank-R), in the order
    they were registered; `pattern` a shell wildcard."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def stitch_types() -> list[StitchType]:
    return list(_REGISTRY.values())


def resolve_stitch(name: str) -> tuple[StitchType, int | None]:
    """The type a stitch name means and its argument: 'lowrank-8' -> (lowrank-R, 8)."""
    types = _REGISTRY
    if name in types and types[name].pattern is None:
        return types[name], None
    for kind in types.values():
        match = re.fullmatch(kind.pattern, name) if kind.pattern else None
        if match:
            arg = int(match.group(1))
            reason = kind.invalid(arg) if kind.invalid else None
            if reason:
                raise PlatoError(f"unknown stitch type '{name}': {reason}")
            return kind, arg
    close = difflib.get_close_matches(name, list(types), n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise PlatoError(f"unknown stitch type '{name}'{hint}: choose one of "
                     f"{', '.join(types)}")
