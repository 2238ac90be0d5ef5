"""Plato: compare neural networks by model stitching."""

__version__ = "0.1.0"

from plato.data import Dataset, DeviceLoader, list_datasets, load_dataset  # noqa: E402
from plato.errors import PlatoError  # noqa: E402
from plato.models import create_model, cut_points, list_models, split  # noqa: E402

__all__ = [
    "Dataset", "DeviceLoader", "PlatoError", "create_model", "cut_points", "list_datasets",
    "list_models", "load_dataset", "split",
]
