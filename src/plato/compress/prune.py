"""Pruned networks: a copy of a network with its least important weights (or channels) removed.

    magnitude         per layer: each conv and linear layer loses `amount` of its weights,
                      those of smallest magnitude (torch.nn.utils.prune.l1_unstructured)
    magnitude-global  one threshold over all of them: `amount` of all conv and linear
                      weights, smallest magnitude first, wherever they are
                      (torch.nn.utils.prune.global_unstructured)
    channels          structured: `amount` of the channels of every conv and linear layer
                      but the logits removed for real, those whose weights (grouped with
                      everything coupled to them: BatchNorm, the next layer's inputs, a
                      residual sum's other branch) have the smallest L2 norm (torch-pruning's
                      dependency graph and GroupMagnitudeImportance); the activations at
                      the cut points get fewer channels, and stitches adapt to them

Unstructured methods keep biases, normalisation layers and embeddings whole, and make the
pruning permanent (`prune.remove`: the zeros are in the weights, no mask or hook is left), so
the pruned network is an ordinary module that traces and stitches like its original (a
channel-pruned one too; its checkpoint says `narrowed`, and loading rebuilds it at its
weights' shapes: plato.models.narrow). The original is never changed. `Pruned` reports the
sparsity measured on the result, not the one asked for.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from plato.data.datasets import Dataset
from plato.errors import PlatoError, SettingError
from plato.settings import check_choice
from plato.train import Recipe, train

PRUNE_METHODS = ("magnitude", "magnitude-global", "channels")
PRUNABLE = (nn.Conv2d, nn.Linear)  # the layers whose weights unstructured pruning zeroes


@dataclass(frozen=True)
class PruneConfig:
    method: str = "magnitude"  # magnitude (per layer) | magnitude-global | channels
    amount: float = 0.5  # the fraction of prunable weights set to zero, in [0, 1)

    def __post_init__(self) -> None:
        check_choice(self, "method", PRUNE_METHODS, "prune")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int | float) \
                or not 0 <= self.amount < 1:
            raise SettingError("amount", f"prune amount must be a number in [0, 1), got "
                               f"{self.amount!r}")


@dataclass
class Pruned:
    model: nn.Module  # the pruned copy
    config: PruneConfig
    sparsity: float  # measured: zero weights / prunable weights
    zero_weights: int
    prunable_weights: int
    parameters: int  # all parameters of the network, zeros included
    original_parameters: int  # the original's (channels: more than `parameters`)
    finetuned_accuracy: float | None = None  # test accuracy after fine-tuning, if any

    def to_dict(self) -> dict:
        return {"method": self.config.method, "amount": self.config.amount,
                "sparsity": self.sparsity, "zero_weights": self.zero_weights,
                "prunable_weights": self.prunable_weights, "parameters": self.parameters,
                "original_parameters": self.original_parameters,
                "finetuned_accuracy": self.finetuned_accuracy}


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def sparsity(model: nn.Module) -> tuple[int, int]:
    """(zero weights, weights) over the conv and linear layers' weights."""
    layers = prunable_layers(model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros, sum(m.weight.numel() for _, m in layers)


def prune_network(model: nn.Module, config: PruneConfig, finetune: Recipe | None = None,
                  dataset: Dataset | None = None, progress: bool = False) -> Pruned:
    """A pruned copy of `model` (its plato attributes kept: name, config, cut blocks), then
    fine-tuned on `dataset` with the `finetune` recipe where one is given: unstructured
    pruning keeps its masks while it trains, so pruned weights stay zero."""
    if finetune is not None and dataset is None:
        raise PlatoError("fine-tuning a pruned network needs the dataset to train on")
    layers = prunable_layers(model)
    if not layers:
        raise PlatoError(f"prune method '{config.method}': {type(model).__name__} has no conv "
                         "or linear layer to prune")
    # (a network that was stitched may hold channels-last conv weights, which
    # torch.nn.utils.prune's global pruning cannot flatten)
    pruned = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    for p in pruned.parameters():  # (torch-pruning leaves frozen parameters alone: a network
        p.requires_grad_(True)      # stitched before has its parameters frozen)
    targets = [(m, "weight") for _, m in prunable_layers(pruned)]
    masked = config.method != "channels" and config.amount > 0
    if config.method == "channels" and config.amount > 0:
        _remove_channels(pruned, config.amount)
    elif masked:
        with torch.no_grad():
            if config.method == "magnitude-global":
                prune.global_unstructured(targets, pruning_method=prune.L1Unstructured,
                                          amount=config.amount)
            else:
                for module, name in targets:
                    prune.l1_unstructured(module, name, amount=config.amount)
    accuracy = None
    if finetune is not None:
        accuracy = train(pruned, dataset, finetune, progress=progress).test_accuracy
    if masked:
        for module, name in targets:
            prune.remove(module, name)  # the zeros into the weight; no mask, no hook
    zeros, total = sparsity(pruned)
    return Pruned(pruned.eval(), config, zeros / total, zeros, total,
                  sum(p.numel() for p in pruned.parameters()),
                  sum(p.numel() for p in model.parameters()), accuracy)


def _logits_layer(model: nn.Module) -> nn.Module:
    """The layer whose outputs are the classes (the zoo's `fc`, timm's `head`, else the last
    linear layer): its outputs are never pruned."""
    for name in ("fc", "head"):
        if isinstance(getattr(model, name, None), nn.Linear):
            return getattr(model, name)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PlatoError("prune method 'channels': the model has no linear classifier layer "
                         "whose outputs (the classes) could be kept")
    return linears[-1]


def _remove_channels(model: nn.Module, amount: float) -> None:
    import torch_pruning as tp  # imported here: only the structured method needs it

    shape = tuple(getattr(model, "input_shape", ()) or ())
    if not shape:
        raise PlatoError("prune method 'channels' needs the model's input_shape")
    example = torch.zeros(1, *shape, device=next(model.parameters()).device)
    before = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on parameters it cannot follow
            pruner = tp.pruner.MetaPruner(
                model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=amount, ignored_layers=[_logits_layer(model)])
            pruner.step()
        with torch.no_grad():
            model(example)  # the pruned shapes must still fit together
        if sum(p.numel() for p in model.parameters()) == before:
            raise PlatoError(f"prune method 'channels' removed no channel at amount {amount:g}"
                             ": too few channels per layer for that amount")
    except PlatoError:
        raise
    except Exception as e:  # torch-pruning met a layer it cannot follow
        raise PlatoError(f"prune method 'channels' cannot prune {type(model).__name__}: "
                         f"{type(e).__name__}: {str(e).strip().splitlines()[0]}; use "
                         "method 'magnitude' (unstructured) for it") from None
    finally:
        model.train(was_training)
