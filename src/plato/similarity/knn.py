"""Mutual k-nearest-neighbour alignment (Huh, Cheung, Wang & Isola 2024, "The Platonic
Representation Hypothesis"): for each example, its k nearest other examples in each
representation; the score is the mean share of the k that both representations name.

Neighbours are by Euclidean distance after centring (Huh et al. use inner products of
normalised features; the Euclidean form keeps the measure invariant to translation as the
other measures are): invariant to rotation, isotropic scaling, translation and a permutation
of units; not to a general linear map. Two unrelated representations share k/(n - 1) of
their neighbours on average: the chance level, reported beside the score.
"""

from __future__ import annotations

import torch

from plato.similarity.base import Score, prepare, register, undefined

K = 10  # neighbours per example


def neighbours(x: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's k nearest other rows by Euclidean distance: (n, k) indices."""
    gram = x @ x.T
    squared = gram.diagonal()
    distances = squared[:, None] + squared[None, :] - 2 * gram  # (n, n)
    distances.fill_diagonal_(float("inf"))  # not its own neighbour
    return distances.topk(k, largest=False).indices


def mutual_knn(x, y, *, k: int = K, layout: str = "flatten") -> Score:
    pair = prepare(x, y, layout)
    if isinstance(pair, Score):
        return pair
    a, b = pair
    if len(a) <= k:
        return undefined(f"{len(a)} examples: mutual {k}-NN needs more than k")
    na, nb = neighbours(a, k), neighbours(b, k)
    shared = (na[:, :, None] == nb[:, None, :]).any(2).sum(1)  # (n,) neighbours both name
    return Score(float(shared.double().mean() / k))


def chance(n: int, k: int = K) -> float:
    """The share of neighbours two unrelated representations of n examples have in common,
    on average."""
    return k / (n - 1)


register("mutual_knn", mutual_knn, larger_is_more_similar=True,
         invariant_to=("orthogonal", "isotropic-scaling", "translation", "permutation"),
         identity=1.0, description=f"mutual {K}-nearest-neighbour alignment", chance=chance)
