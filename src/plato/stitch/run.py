"""One stitch, end to end: build, fit, measure. And block replacement inside one network."""

from __future__ import annotations

import time

import torch
from torch import nn

from plato.checkpoint import Checkpoint
from plato.data.datasets import Dataset
from plato.errors import PlatoError
from plato.models.cuts import CutGraph
from plato.stitch.fit import StitchConfig, fit_stitch
from plato.stitch.layers import Stitch
from plato.stitch.metrics import StitchResult, measure_stitched
from plato.stitch.stitched import StitchedModel
from plato.train import evaluate, resolve_device


def _network(net: nn.Module | Checkpoint) -> tuple[nn.Module, str]:
    if isinstance(net, Checkpoint):
        return net.model, str(net.path or net.name)
    return net, getattr(net, "plato_name", type(net).__name__)


def stitch_networks(
    sender: nn.Module | Checkpoint,
    receiver: nn.Module | Checkpoint,
    sender_point: str | int,
    receiver_point: str | int,
    dataset: Dataset,
    *,
    stitch: str = "bn-conv1x1-bn",
    config: StitchConfig | None = None,
    granularity: str = "block",
    resize: str = "area",
    identity_init: bool = False,
    accuracies: tuple[float, float] | None = None,
    graphs: tuple[CutGraph, CutGraph] | None = None,
    progress: bool = False,
) -> tuple[StitchResult, StitchedModel]:
    """Stitch `sender` at one cut point into `receiver` at another; fit and measure.

    `accuracies` (sender, receiver) skips re-evaluating the two networks when known, and
    `graphs` re-tracing them. Raises NotStitchable for points the stitch type cannot join.
    """
    config = config or StitchConfig()
    if identity_init:  # the identity is the start: no data-dependent re-initialisation
        config = StitchConfig(**{**config.to_dict(), "init": "default"})
    device = resolve_device(config.device)
    (s_net, s_name), (r_net, r_name) = _network(sender), _network(receiver)
    for net in (s_net, r_net):
        net.to(device).eval()
    if accuracies is None:
        accuracies = (evaluate(s_net, dataset, device=device)["accuracy"],
                      evaluate(r_net, dataset, device=device)["accuracy"])
    if graphs is None:
        s_graph = CutGraph(s_net)
        graphs = (s_graph, s_graph if r_net is s_net else CutGraph(r_net))
    s_graph, r_graph = graphs
    s_point = s_graph.point(sender_point, granularity)
    r_point = r_graph.point(receiver_point, granularity)

    start = time.perf_counter()
    torch.manual_seed(config.seed)  # the stitch's initialisation
    layer = Stitch(stitch, s_point.shape, r_point.shape, resize)
    if identity_init:
        layer.init_identity()
    model = StitchedModel(s_graph, s_point, layer, r_graph, r_point).to(device)
    fit = fit_stitch(model, dataset, config, progress=progress)
    metrics = measure_stitched(model, dataset, device=device)
    receiver_acc = accuracies[1]
    result = StitchResult(
        sender=s_name, receiver=r_name,
        sender_point=s_point.name, receiver_point=r_point.name,
        stitch=stitch, objective=config.objective, dataset=dataset.name,
        stitched_accuracy=metrics["accuracy"],
        sender_accuracy=accuracies[0], receiver_accuracy=receiver_acc,
        normalized_accuracy=metrics["accuracy"] / receiver_acc if receiver_acc else float("nan"),
        stitched_loss=metrics["loss"], stitch_loss=fit.loss,
        activation_mse=metrics["activation_mse"], activation_cka=metrics["activation_cka"],
        stitch_parameters=layer.num_parameters, epochs=fit.epochs,
        seconds=time.perf_counter() - start, seed=config.seed,
        sender_point_index=s_point.index, receiver_point_index=r_point.index,
    )
    return result, model


def replace_span(
    network: nn.Module | Checkpoint,
    from_point: str | int,
    to_point: str | int,
    dataset: Dataset,
    *,
    objectives: tuple[str, ...] = ("match", "task"),
    stitch: str = "bn-conv1x1-bn",
    config: StitchConfig | None = None,
    granularity: str = "block",
    progress: bool = False,
) -> list[StitchResult]:
    """Replace the span from cut point i to cut point j (i < j) of one trained network by a
    stitch, once per objective: `match` on the network's own activations at j (the
    autoencoder) and `task` (vanilla), reported side by side.

    Each result's stitched_accuracy is the network's accuracy with the span replaced and its
    activation_mse the error against the original activations at j.
    """
    config = config or StitchConfig()
    net, _ = _network(network)
    graph = CutGraph(net)
    i, j = graph.point(from_point, granularity), graph.point(to_point, granularity)
    if i.index >= j.index:
        raise PlatoError(f"replace needs from < to, got {i.name} (#{i.index}) and "
                         f"{j.name} (#{j.index})")
    device = resolve_device(config.device)
    acc = evaluate(net.to(device), dataset, device=device)["accuracy"]
    results = []
    for objective in objectives:
        cfg = StitchConfig(**{**config.to_dict(), "objective": objective})
        result, _ = stitch_networks(network, network, i.name, j.name, dataset, stitch=stitch,
                                    config=cfg, granularity="layer", accuracies=(acc, acc),
                                    progress=progress)
        results.append(result)
    return results
