"""Compressed networks beside their originals: pruning (and, next, distillation)."""

from plato.compress.prune import PRUNE_METHODS, PruneConfig, Pruned, prune_network, sparsity

__all__ = ["PRUNE_METHODS", "PruneConfig", "Pruned", "prune_network", "sparsity"]
