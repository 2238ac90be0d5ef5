"""A dataset's images as a network takes them and as a person sees them: normalised float
input, pixel values in [0, 1], uint8 pictures; and which test images pictures show."""

from __future__ import annotations

import torch

from plato.data.datasets import Dataset, Split


def to_channels(values: tuple[float, ...], device) -> torch.Tensor:
    """Per-channel values (a dataset's mean or std) shaped (1, C, 1, 1) for images."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def normalised(split: Split, dataset: Dataset, device: torch.device) -> torch.Tensor:
    """A split's uint8 images as the network's normalised float input."""
    x = split.images.to(device).float() / 255.0
    return (x - to_channels(dataset.mean, device)) / to_channels(dataset.std, device)


def pixels(x: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """Normalised images -> pixel values in [0, 1] (clamped: a reconstruction may overshoot)."""
    mean, std = to_channels(dataset.mean, x.device), to_channels(dataset.std, x.device)
    return (x.float() * std + mean).clamp(0.0, 1.0)


def as_uint8(x: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """Normalised images -> uint8 pictures on the CPU, contiguous (as safetensors stores)."""
    return (pixels(x, dataset) * 255).round().to(torch.uint8).cpu().contiguous()


def shown_images(dataset: Dataset, n: int) -> torch.Tensor:
    """Which test images the pictures show: the first of each class, then the next ones, in
    the split's order (the same for every network and cut point)."""
    labels = dataset.test.labels
    firsts = [int((labels == c).nonzero()[0]) for c in range(dataset.num_classes)
              if bool((labels == c).any())]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])
