"""The cut graph of any model: traced by torch.fx where it can be (plato.models.traced), through
forward hooks where it cannot (plato.models.hooks); both give the CutGraph interface."""

from __future__ import annotations

from torch import nn

from plato.models.cuts import CutGraph, CutPoint
from plato.models.hooks import HookCutGraph
from plato.models.traced import TracedCutGraph, trace


def cut_graph(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> CutGraph:
    """The model's cut points and splits, by torch.fx, or by forward hooks where fx cannot
    trace it (data-dependent control flow)."""
    try:
        traced = trace(model)
    except Exception as e:  # fx raises many kinds on data-dependent control flow
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        return HookCutGraph(model, input_shape, fx_error=reason)
    return TracedCutGraph(model, input_shape, traced)


def cut_points(model: nn.Module, input_shape: tuple[int, ...] | None = None,
               granularity: str = "block") -> list[CutPoint]:
    """The ordered cut points of a model for an input shape (C, H, W)."""
    return cut_graph(model, input_shape).points(granularity)


def split(model: nn.Module, point: str | int | CutPoint,
          input_shape: tuple[int, ...] | None = None,
          granularity: str = "block") -> tuple[nn.Module, nn.Module]:
    """(prefix, suffix) modules with suffix(prefix(x)) == model(x)."""
    return cut_graph(model, input_shape).split(point, granularity)
