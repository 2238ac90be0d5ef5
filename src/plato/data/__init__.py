"""Datasets (uint8 images on disk and on the device) and the device-resident loader."""

from plato.data.datasets import Dataset, Split, list_datasets, load_dataset
from plato.data.loader import Augment, DeviceLoader

__all__ = ["Augment", "Dataset", "DeviceLoader", "Split", "list_datasets", "load_dataset"]
