"""The examples the whole-matrix measures see, held in bounded memory.

A whole-matrix measure (linear CKA, Procrustes, CCA, ...) compares every layer of one network
with every layer of the other on the same n examples, so every layer's n rows must be at hand
at once. Held raw, a large network's layers do not fit: ResNet-50 at 224 pixels gives 23 MB an
example over its block points, 47 GB for 2048 examples. Two things bound it:

- each layer is reduced as soon as it is held (`hold_layer`): centred, and where every measure
  depends on it only through its Gram matrix, replaced by a factor with that Gram (n x min(n,
  d)); a wide layer's Gram is summed over chunks of its features, so no float64 copy of the
  whole layer is ever made;
- the layers are held a group at a time (`plan_groups`), one pass over the examples per group,
  each group's raw activations and every reduced layer together within the budget.

A layer that alone does not fit is refused before any pass, saying how many examples would.
Neither changes a value: a layer is reduced the same way in whichever group it is held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from plato.errors import PlatoError, SettingError
from plato.similarity.base import Score, as_matrix, undefined
from plato.similarity.procrustes import factor_of_gram, gram_factor

CHUNK_BYTES = 256 * 2**20  # float64 features summed into a wide layer's Gram at once
RAW_BYTES = 4  # held activations are float32


@dataclass
class HeldLayer:
    """A layer's rows for `examples` examples (`per` rows an example: one per spatial position
    under the `positions` layout), centred; a Gram factor where the measures allow it."""

    matrix: torch.Tensor  # (examples * per, d) float64
    examples: int

    @property
    def per(self) -> int:
        return len(self.matrix) // self.examples

    def first(self, n: int) -> torch.Tensor:
        """The rows of the first `n` examples, centred over them (the Gram of the layer's first
        n examples, centred: a factor's rows re-centred give exactly that)."""
        if n == self.examples:
            return self.matrix
        return _centred(self.matrix[: n * self.per])

    def of(self, examples: torch.Tensor) -> torch.Tensor:
        """The rows of `examples` (indices), centred over them."""
        return _centred(self.matrix[example_rows(examples, self.per)])


def example_rows(examples: torch.Tensor, per: int) -> torch.Tensor:
    """The rows of a matrix with `per` consecutive rows an example that hold `examples`, in
    their order."""
    return (examples[:, None] * per + torch.arange(per)).reshape(-1)  # (len(examples) * per,)


def _centred(m: torch.Tensor) -> torch.Tensor:
    return m - m.mean(0, keepdim=True)


def for_measure(m: torch.Tensor, gram_only: bool) -> torch.Tensor:
    """Rows as a measure takes them: reduced to a Gram factor where it allows (a factor
    already is one: unchanged)."""
    return gram_factor(m) if gram_only and bool(torch.isfinite(m).all()) else m


def hold_layer(rep: torch.Tensor, layout: str, gram_only: bool) -> HeldLayer | Score:
    """`rep` (n, ...) float32 as a HeldLayer (or the Score saying why it has no rows)."""
    n = len(rep)
    if gram_only and _flattens(rep, layout):
        flat = rep.reshape(n, -1)  # (n, ...) -> (n, d): what as_matrix gives, still float32
        if _summed_in_chunks(n, flat.shape[1]):
            return _chunked(flat)
    try:
        m = as_matrix(rep, layout)
    except PlatoError as e:
        return undefined(str(e))
    return HeldLayer(for_measure(_centred(m), gram_only), n)


def _flattens(rep: torch.Tensor, layout: str) -> bool:
    """Whether as_matrix(rep, layout) is rep with its features flattened."""
    return (layout == "flatten" and rep.ndim in (2, 3, 4)) or (rep.ndim == 2 and
                                                               layout == "pool")


def _summed_in_chunks(n: int, d: int) -> bool:
    """Whether an (n, d) layer's Gram is summed over chunks of its features: wider than its
    examples (a factor is smaller than the layer) and too large for one float64 copy."""
    return d > n and n * d * 8 > CHUNK_BYTES


def _chunked(flat: torch.Tensor) -> HeldLayer | Score:
    """A wide (n, d) layer's centred Gram factor, its Gram summed over chunks of features."""
    n, d = flat.shape
    gram = torch.zeros(n, n, dtype=torch.float64)
    columns = max(1, CHUNK_BYTES // (8 * n))
    for start in range(0, d, columns):
        block = flat[:, start:start + columns].double()
        if not bool(torch.isfinite(block).all()):
            return undefined("the activations hold non-finite values")
        block = _centred(block)
        gram += block @ block.T
    return HeldLayer(factor_of_gram(gram, (n, d)), n)


@dataclass
class Footprint:
    """What holding one layer of `shape` for n examples takes, in bytes."""

    raw: int  # its activations, float32, while its group is held
    reduced: int  # the HeldLayer, kept to the end
    working: int  # the reduction's temporary copies

    @classmethod
    def of(cls, shape: tuple[int, ...], n: int, layout: str, gram_only: bool) -> Footprint:
        features = math.prod(shape)
        try:  # rows an example and columns, as the layout lays the layer out
            per, d = as_matrix(torch.zeros(1, *shape), layout).shape
        except PlatoError:
            return cls(n * features * RAW_BYTES, 0, 0)
        rows = n * per
        if gram_only and per == 1 and _summed_in_chunks(n, d):
            return cls(n * features * RAW_BYTES, rows * rows * 8, CHUNK_BYTES + 2 * rows * rows * 8)
        columns = min(rows, d) if gram_only else d
        gram = 2 * rows * rows * 8 if gram_only and d > rows else 0
        return cls(n * features * RAW_BYTES, rows * columns * 8, 2 * rows * d * 8 + gram)


def plan_groups(shapes: list[tuple[int, ...]], names: list[str], n: int, layout: str,
                gram_only: bool, budget: int) -> list[list[int]]:
    """The layers (indices of `shapes`, each one example's activation shape) held at once in
    each pass over n examples: in order, as many as fit `budget` beside every layer's reduced
    form and the largest working copy. Refuses, before any pass, a budget that cannot hold one
    layer, saying how many examples it can."""

    def room(m: int) -> tuple[list[Footprint], int]:
        prints = [Footprint.of(s, m, layout, gram_only) for s in shapes]
        reduced = sum(f.reduced for f in prints)
        return prints, budget - reduced - max((f.working for f in prints), default=0)

    footprints, free = room(n)
    largest = max(range(len(shapes)), key=lambda i: footprints[i].raw, default=None)
    if largest is not None and footprints[largest].raw > free:
        low, high = 0, n  # the most examples that fit: fits(low), not fits(high)
        while high - low > 1:
            mid = (low + high) // 2
            prints, left = room(mid)
            low, high = (mid, high) if max(f.raw for f in prints) <= left else (low, mid)
        raise SettingError(
            "memory_gb", f"similarity: holding {n} examples of '{names[largest]}' takes "
            f"{_gb(footprints[largest].raw)} ({_gb(footprints[largest].raw / n)} an example), "
            f"and every layer's reduced rows {_gb(sum(f.reduced for f in footprints))}: more "
            f"than the {_gb(budget)} the grid may hold (similarity memory_gb); lower collect "
            f"(and null_examples) to {low} or fewer, or raise memory_gb")
    groups: list[list[int]] = []
    used = free + 1
    for i, f in enumerate(footprints):
        if used + f.raw > free:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += f.raw
    return groups


def _gb(size: float) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**27 else f"{size / 2**20:.1f} MB"
