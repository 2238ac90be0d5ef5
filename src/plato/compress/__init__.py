"""Compressed networks beside their originals: pruning and distillation."""

from plato.compress.distill import DistillConfig, Distilled, distill, soft_loss
from plato.compress.prune import PRUNE_METHODS, PruneConfig, Pruned, prune_network, sparsity

__all__ = ["PRUNE_METHODS", "DistillConfig", "Distilled", "PruneConfig", "Pruned", "distill",
           "prune_network", "soft_loss", "sparsity"]
