"""Frozen activations at several cut points of one network, from one forward pass per batch.

Many stitches of one sender/receiver pair read the same frozen activations. Running each
stitch's own prefix would repeat the network's forward pass once per cell; an
`Activations` source computes every point the cells need once per batch and hands each cell
its tensor by point name.

    Activations.of(graph, points)      one traced pass returning all the points (a sweep's grid)
    Activations.senders(models)        the models' own sender prefixes, one per distinct point
    Activations.receivers(models)      the same for the receivers' prefixes
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from plato.data.datasets import cache_dir
from plato.device import free_memory, layout_of
from plato.models.cuts import CutGraph, CutPoint


class Activations:
    """Callable: a batch -> {point name: activation}, without gradients."""

    def __init__(self, sources: Sequence[nn.Module]) -> None:
        self.sources = list(sources)  # each returns {point name: activation}

    @classmethod
    def of(cls, graph: CutGraph, points: Sequence[CutPoint]) -> Activations:
        return cls([graph.extract(list(points)).eval()])

    @classmethod
    def senders(cls, models: Sequence[nn.Module]) -> Activations:
        prefixes = {m.sender_point.name: m.sender_prefix for m in models}
        return cls([_Named(name, prefix) for name, prefix in prefixes.items()])

    @classmethod
    def receivers(cls, models: Sequence[nn.Module]) -> Activations:
        prefixes = {m.receiver_point.name: m.receiver_prefix for m in models}
        return cls([_Named(name, prefix) for name, prefix in prefixes.items()])

    def to(self, device: torch.device | str,
           memory_format: torch.memory_format = torch.contiguous_format) -> Activations:
        for module in self.sources:
            module.to(device, memory_format=memory_format)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor,
                 indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The activations of batch `x` (`indices`, which examples it holds, serve only
        CachedActivations)."""
        out = {}
        for module in self.sources:
            out.update(module(x))
        return out


class _Named(nn.Module):
    """A prefix returning {its point's name: its activation}."""

    def __init__(self, name: str, prefix: nn.Module) -> None:
        super().__init__()
        self.name, self.prefix = name, prefix

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.prefix(x)}


def free_disk(directory: Path) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(directory).free
    except OSError:  # not writable, not there: no disk cache
        return 0


class CachedActivations:
    """Frozen activations kept per training example after their first pass, for the later
    epochs of the task phase: the tensors as computed (their dtype, bf16 under bf16 autocast,
    and layout), so every epoch sees the same values bit for bit. Only where the inputs repeat
    (no augmentation). Where they are kept is chosen by the cache's size at the first batch
    (`tier` "auto"): on the device when it fits in `fraction` of its free memory; else in
    memory-mapped files under `directory` (the host's page cache, spilling to disk) when it fits
    in `fraction` of the free disk there; else nowhere (each batch computed as before).
    "device" and "disk" ask for one tier only, "off" for none. A disk file is reserved in full
    when mapped (a disk that cannot hold it means no cache, not a crash mid-epoch) and unlinked
    at once, so nothing is left behind, even by a killed process."""

    def __init__(self, source: Activations, examples: int, tier: str = "auto",
                 fraction: float = 0.25, directory: Path | None = None) -> None:
        self.source, self.examples, self.fraction = source, examples, fraction
        self.tier = tier
        self.directory = directory
        self.store: dict[str, torch.Tensor] | None = None
        self.filled: torch.Tensor | None = None  # (examples,) bool
        self.where: str | None = None  # "device", "disk" or "none", once the first batch came
        self.hits = 0  # batches served from the cache

    def nbytes(self, batch: dict[str, torch.Tensor]) -> int:
        """The cache's size for activations like `batch`'s."""
        return sum(v[0].numel() * v.element_size() for v in batch.values()) * self.examples

    def __call__(self, x: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The activations of batch `x`, whose examples are `indices` (CPU: which are cached is
        kept on the CPU, so a lookup never waits for the device)."""
        if self.filled is not None and bool(self.filled[indices].all()):
            self.hits += 1
            return {name: values[indices.to(values.device)].to(x.device, non_blocking=True)
                    .contiguous(memory_format=layout_of(values))
                    for name, values in self.store.items()}
        out = self.source(x)
        if self.where is None:
            self.store = self._allocate(out)
            if self.store is not None:
                self.filled = torch.zeros(self.examples, dtype=torch.bool)
        if self.store is not None:
            for name, v in out.items():
                kept = self.store[name]
                kept[indices.to(kept.device)] = v.to(kept.device)
            self.filled[indices] = True
        return out

    def _allocate(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        size = self.nbytes(out)
        device = next(iter(out.values())).device
        if self.tier in ("auto", "device") and size <= self.fraction * free_memory(device):
            self.where = "device"
            return {name: torch.empty((self.examples, *v.shape[1:]), dtype=v.dtype,
                                      device=device, memory_format=layout_of(v))
                    for name, v in out.items()}
        directory = self.directory or cache_dir() / "activations"
        if self.tier in ("auto", "disk") and size <= self.fraction * free_disk(directory):
            try:
                store = {name: _mapped(directory, v, self.examples) for name, v in out.items()}
                self.where = "disk"
                return store
            except OSError:  # the disk filled meanwhile: compute each batch, as without
                pass
        self.where = "none"
        return None


def _mapped(directory: Path, like: torch.Tensor, examples: int) -> torch.Tensor:
    """An uninitialised (examples, *like.shape[1:]) tensor of like's dtype and layout, memory
    mapped from a file in `directory`, reserved in full (OSError if the disk cannot hold it) and
    already unlinked."""
    per_example = like[0].numel()
    fd, path = tempfile.mkstemp(prefix="activations-", suffix=".bin", dir=directory)
    try:
        os.posix_fallocate(fd, 0, examples * per_example * like.element_size())
        flat = torch.from_file(path, shared=True, size=examples * per_example, dtype=like.dtype)
    finally:
        os.close(fd)
        os.unlink(path)  # the mapping lives on; the file goes with the last reference
    if layout_of(like) is torch.channels_last:
        _, c, h, w = like.shape
        return flat.view(examples, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W), NHWC in memory
    return flat.view(examples, *like.shape[1:])
