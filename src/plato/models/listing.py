"""What `plato models` lists: each model with its parameters, options, input shape and cut
points (found by which mechanism)."""

from __future__ import annotations

from dataclasses import dataclass

from plato.errors import PlatoError
from plato.models.cuts import CutPoint
from plato.models.graph import cut_graph
from plato.models.registry import create_model, list_models, model_options


@dataclass
class ModelListing:
    name: str
    parameters: int
    input_shape: tuple[int, ...]
    options: list[str]
    cut_points_by: str  # torch.fx or forward hooks
    cut_points: list[CutPoint]

    def to_dict(self) -> dict:
        return {"name": self.name, "parameters": self.parameters,
                "input_shape": list(self.input_shape), "options": self.options,
                "cut_points_by": self.cut_points_by,
                "cut_points": [p.to_dict() for p in self.cut_points]}


def list_model_points(pattern: str = "*", input_shape: tuple[int, ...] | None = None,
                      granularity: str = "block") -> list[ModelListing]:
    """Every model matching `pattern` (a shell wildcard, or a family's name such as
    resnet-3463 that is not listed), built at `input_shape`, with its cut points."""
    names = list_models(pattern)
    if not names and "*" not in pattern and "?" not in pattern:
        names = [pattern]  # a family name such as resnet-3463 that is not listed
    if not names:
        raise PlatoError(f"no model matches '{pattern}': try `plato models` for all")
    out = []
    for name in names:
        model = create_model(name, input_shape=input_shape)
        graph = cut_graph(model)
        out.append(ModelListing(name, sum(p.numel() for p in model.parameters()),
                                tuple(model.input_shape), model_options(name), graph.mechanism,
                                graph.points(granularity)))
    return out
