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

from collections.abc import Sequence

import torch
from torch import nn

from plato.models.cuts import CutGraph, CutPoint


class Activations:
    """Callable: a batch -> {point name: activation}, without gradients."""

    def __init__(self, parts: Sequence[tuple[tuple[str, ...], nn.Module]]) -> None:
        # Each part is (names, module); the module returns one tensor or a tuple, one per name.
        self.parts = list(parts)

    @classmethod
    def of(cls, graph: CutGraph, points: Sequence[CutPoint]) -> Activations:
        unique = list({p.name: p for p in points}.values())
        return cls([(tuple(p.name for p in unique), graph.extractor(unique).eval())])

    @classmethod
    def senders(cls, models: Sequence[nn.Module]) -> Activations:
        parts = {m.sender_point.name: m.sender_prefix for m in models}
        return cls([((name,), module) for name, module in parts.items()])

    @classmethod
    def receivers(cls, models: Sequence[nn.Module]) -> Activations:
        parts = {m.receiver_point.name: m.receiver_prefix for m in models}
        return cls([((name,), module) for name, module in parts.items()])

    def to(self, device: torch.device | str,
           memory_format: torch.memory_format = torch.contiguous_format) -> Activations:
        for _, module in self.parts:
            module.to(device, memory_format=memory_format)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for names, module in self.parts:
            values = module(x)
            if isinstance(values, torch.Tensor):
                values = (values,)
            out.update(zip(names, values, strict=True))
        return out


def _free_bytes(device: torch.device) -> int:
    """Memory free for a cache on `device`: CUDA's free memory, or Linux's MemAvailable; 0
    where unknown (no cache)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CachedActivations:
    """Frozen activations kept per training example after their first pass, on the device, for
    the later epochs of the task phase: the tensors as computed (their dtype, bf16 under bf16
    autocast, and layout), so every epoch sees the same values bit for bit. Only where the
    inputs repeat (no augmentation), and only when the whole cache fits in `fraction` of the
    device's free memory at the first batch; otherwise each batch is computed as before."""

    def __init__(self, source: Activations, examples: int, fraction: float = 0.25) -> None:
        self.source, self.examples, self.fraction = source, examples, fraction
        self.store: dict[str, torch.Tensor] | None = None
        self.filled: torch.Tensor | None = None  # (examples,) bool
        self.enabled = True
        self.hits = 0  # batches served from the cache

    def nbytes(self, batch: dict[str, torch.Tensor]) -> int:
        """The cache's size for activations like `batch`'s."""
        return sum(v[0].numel() * v.element_size() for v in batch.values()) * self.examples

    def __call__(self, x: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The activations of batch `x`, whose examples are `indices` (CPU: which are cached is
        kept on the CPU, so a lookup never waits for the device)."""
        if self.filled is not None and bool(self.filled[indices].all()):
            self.hits += 1
            on_device = indices.to(x.device)
            return {name: values[on_device].contiguous(memory_format=_layout(values))
                    for name, values in self.store.items()}
        out = self.source(x)
        if self.enabled and self.store is None:
            self.enabled = self.nbytes(out) <= self.fraction * _free_bytes(x.device)
            if self.enabled:
                self.store = {name: torch.empty((self.examples, *v.shape[1:]), dtype=v.dtype,
                                                device=v.device,
                                                memory_format=_layout(v))
                              for name, v in out.items()}
                self.filled = torch.zeros(self.examples, dtype=torch.bool)
        if self.store is not None:
            on_device = indices.to(x.device)
            for name, v in out.items():
                self.store[name][on_device] = v
            self.filled[indices] = True
        return out


def _layout(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
            and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
