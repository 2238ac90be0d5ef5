"""A device-resident data loader: the whole split lives on the device as one uint8 tensor.

Shuffling, batching, augmentation, normalisation and dtype conversion are tensor ops on that
device; there are no worker processes. All randomness of an epoch is drawn up front from one
CPU generator seeded by `seed`, so the batches are the same on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plato.data.datasets import Dataset, Split
from plato.device import memory_format
from plato.errors import PlatoError

AUGMENT_PRESETS = ("auto", "none", "crop", "flip", "crop-flip", "translate-flip")


@dataclass(frozen=True)
class Augment:
    crop_padding: int = 0  # pad by this many pixels, then crop back at a random offset; 0 = off
    padding_mode: str = "constant"  # "constant" (black border) or "reflect" (a random translate)
    hflip: bool = False  # random horizontal flip with probability 1/2

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    @classmethod
    def preset(cls, name: str, dataset: Dataset | None = None) -> Augment:
        """`auto`: crop (padding 4) and flip for colour images of 32 px or more, else none.

        Flipping is wrong for digits and characters (grey datasets such as digits and MNIST),
        and an 8x8 image has no room for a 4-pixel crop, so those train unaugmented.
        """
        if name == "auto":
            colour = dataset is not None and dataset.input_shape[0] == 3
            big = dataset is not None and min(dataset.input_shape[1:]) >= 32
            name = "crop-flip" if colour and big else "none"
        presets = {
            "none": cls(),
            "crop": cls(crop_padding=4),
            "flip": cls(hflip=True),
            "crop-flip": cls(crop_padding=4, hflip=True),
            "translate-flip": cls(crop_padding=2, padding_mode="reflect", hflip=True),
        }
        if name not in presets:
            raise PlatoError(f"unknown augmentation '{name}': choose one of {AUGMENT_PRESETS}")
        return presets[name]


class DeviceLoader:
    """Iterates over (x, y) batches: x float (B, C, H, W) normalised, y int64 (B,).
    `indices` holds the split's indices of the batch just yielded, on the CPU (for activation
    caches: no device synchronisation to look them up)."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: Augment = Augment(),
        drop_last: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if batch_size < 1:
            raise PlatoError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)  # (N, C, H, W) uint8, resident
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.dtype = dtype
        self.memory_format = memory_format
        self.generator = torch.Generator().manual_seed(seed)
        self.indices: torch.Tensor | None = None
        c = self.images.shape[1]
        if len(mean) != c or len(std) != c:
            raise PlatoError(f"mean/std have {len(mean)}/{len(std)} channels, images have {c}")
        # x_normalised = x_uint8 * scale + shift, one fused op per batch.
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        pad = self.augment.crop_padding
        if pad:  # offsets into the padded image, in [0, 2 * pad]
            offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=self.generator)
            offsets = offsets.to(self.device)
        if self.augment.hflip:
            flips = (torch.rand(n, generator=self.generator) < 0.5).to(self.device)
        order, host_order = order.to(self.device), order
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx].to(torch.float32)  # (B, C, H, W) in [0, 255]
            if pad:
                x = _random_crop(x, pad, self.augment.padding_mode, offsets[b * self.batch_size :][
                    : len(idx)])
            if self.augment.hflip:
                f = flips[b * self.batch_size :][: len(idx)].view(-1, 1, 1, 1)
                x = torch.where(f, x.flip(3), x)
            x = (x * self.scale + self.shift).to(self.dtype)
            self.indices = host_order[b * self.batch_size : (b + 1) * self.batch_size]
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]


def _random_crop(x: torch.Tensor, pad: int, mode: str, offsets: torch.Tensor) -> torch.Tensor:
    """Pad (B, C, H, W) by `pad` and crop each image back to H x W at its own offset."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)  # (B, C, H + 2p, W + 2p)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, C, H, W)


def make_loader(
    dataset: Dataset,
    split: str,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    train: bool = False,
    augment: str | Augment = "auto",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> DeviceLoader:
    """The loader a training (shuffled, augmented, full batches) or evaluation run wants."""
    if isinstance(augment, str):
        augment = Augment.preset(augment, dataset)
    return DeviceLoader(
        dataset.train if split == "train" else dataset.test,
        batch_size,
        mean=dataset.mean,
        std=dataset.std,
        device=device,
        shuffle=train,
        augment=augment if train else Augment(),
        drop_last=train and len(dataset.train) > batch_size,
        seed=seed,
        dtype=dtype,
        memory_format=memory_format(channels_last),
    )
