"""The model zoo and the cut-point mechanism."""

from plato.models import cnn, mlp, resnet, vgg, vit  # noqa: F401  (registers the zoo)
from plato.models.cuts import CutGraph, CutPoint
from plato.models.graph import cut_graph, cut_points, split
from plato.models.registry import (
    check_option_types,
    create_model,
    list_models,
    model_options,
    register_family,
    register_model,
)

__all__ = [
    "CutGraph", "CutPoint", "check_option_types", "create_model", "cut_graph", "cut_points",
    "list_models", "model_options",
    "register_family", "register_model", "split",
]
