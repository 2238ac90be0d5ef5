"""One stitch, end to end: build, fit, measure. And block replacement inside one network."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from plato.checkpoint import Checkpoint
from plato.data.datasets import Dataset
from plato.device import resolve_device
from plato.errors import PlatoError
from plato.models import cut_graph
from plato.models.cuts import CutGraph, CutPoint
from plato.stats import accuracy_interval
from plato.stitch.activations import Activations
from plato.stitch.config import StitchConfig
from plato.stitch.fit import fit_stitches
from plato.stitch.layers import NotStitchable, Stitch
from plato.stitch.metrics import StitchResult, measure_stitches
from plato.stitch.registry import DEFAULT_STITCH
from plato.stitch.stitched import StitchedModel
from plato.train import evaluate


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
    stitch: str = DEFAULT_STITCH,
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
    (outcome, model), = stitch_grid(
        sender, receiver, [(sender_point, receiver_point)], dataset, stitch=stitch,
        config=config, granularity=granularity, resize=resize, identity_init=identity_init,
        accuracies=accuracies, graphs=graphs, progress=progress)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome, model


def stitch_grid(
    sender: nn.Module | Checkpoint,
    receiver: nn.Module | Checkpoint,
    point_pairs: Sequence[tuple[str | int | CutPoint, str | int | CutPoint]],
    dataset: Dataset,
    *,
    stitch: str = DEFAULT_STITCH,
    config: StitchConfig | None = None,
    granularity: str = "block",
    resize: str = "area",
    identity_init: bool = False,
    accuracies: tuple[float, float] | None = None,
    graphs: tuple[CutGraph, CutGraph] | None = None,
    names: tuple[str, str] | None = None,
    progress: bool = False,
) -> list[tuple[StitchResult | PlatoError, StitchedModel | None]]:
    """Many stitches between one sender and one receiver, sharing the frozen networks' passes.

    Each (sender point, receiver point) pair gets the result it would get alone (same seed,
    same batches); the sender and receiver run once per batch for all of them. Returns, per
    pair, its result and model, or the error (NotStitchable, a non-finite loss...) and None.
    Each result's `seconds` is its share of the grid's time. `names` (sender, receiver) names
    the networks in the results (default: the checkpoint's path, else the model's name).
    """
    config = config or StitchConfig.converging()
    if identity_init:  # the identity is the start: no data-dependent re-initialisation
        config = replace(config, init="default")
    device = resolve_device(config.device)
    config = replace(config, device=str(device))  # resolved once: the parts below agree
    (s_net, s_name), (r_net, r_name) = _network(sender), _network(receiver)
    if names is not None:
        s_name, r_name = names
    for net in (s_net, r_net):
        net.to(device).eval()
    if accuracies is None:
        accuracies = (evaluate(s_net, dataset, device=device)["accuracy"],
                      evaluate(r_net, dataset, device=device)["accuracy"])
    if graphs is None:
        s_graph = cut_graph(s_net)
        graphs = (s_graph, s_graph if r_net is s_net else cut_graph(r_net))
    s_graph, r_graph = graphs

    start = time.perf_counter()
    outcomes: list = []
    models: list[StitchedModel] = []
    for sp, rp in point_pairs:
        s_point, r_point = s_graph.point(sp, granularity), r_graph.point(rp, granularity)
        try:
            torch.manual_seed(config.seed)  # the stitch's initialisation, the same as alone
            layer = Stitch(stitch, s_point.shape, r_point.shape, resize, config.class_token,
                           s_point.tokens, r_point.tokens)
        except NotStitchable as e:
            outcomes.append((e, None))
            continue
        if identity_init:
            layer.init_identity()
        model = StitchedModel(s_graph, s_point, layer, r_graph, r_point).to(device)
        outcomes.append((None, model))
        models.append(model)
    if models:
        senders = Activations.of(s_graph, [m.sender_point for m in models])
        receivers = Activations.of(r_graph, [m.receiver_point for m in models])
        fits = fit_stitches(models, dataset, config, senders, receivers, progress=progress)
        fitted = [m for m, f in zip(models, fits, strict=True) if not isinstance(f, Exception)]
        metrics = dict(zip(map(id, fitted), measure_stitches(
            fitted, dataset, device=device, senders=senders, receivers=receivers,
            channels_last=config.channels_last, cell_threads=config.cell_threads),
            strict=True))
        fit_of = dict(zip(map(id, models), fits, strict=True))
    share = (time.perf_counter() - start) / max(1, len(point_pairs))
    results = []
    for error, model in outcomes:
        if model is None:
            results.append((error, None))
            continue
        fit = fit_of[id(model)]
        if isinstance(fit, Exception):
            results.append((fit, None))
            continue
        m, receiver_acc = metrics[id(model)], accuracies[1]
        low, high = accuracy_interval(int(m["correct"].sum()), len(m["correct"]))
        results.append((StitchResult(
            sender=s_name, receiver=r_name,
            sender_point=model.sender_point.name, receiver_point=model.receiver_point.name,
            stitch=stitch, objective=config.objective, dataset=dataset.name,
            stitched_accuracy=m["accuracy"],
            sender_accuracy=accuracies[0], receiver_accuracy=receiver_acc,
            normalized_accuracy=m["accuracy"] / receiver_acc if receiver_acc else float("nan"),
            stitched_loss=m["loss"], stitch_loss=fit.loss,
            activation_mse=m["activation_mse"], activation_cka=m["activation_cka"],
            receiver_distance=m["receiver_distance"],
            receiver_own_distance=m["receiver_own_distance"],
            stitch_parameters=model.stitch.num_parameters, epochs=fit.epochs,
            seconds=share, seed=config.seed,
            sender_point_index=model.sender_point.index,
            receiver_point_index=model.receiver_point.index,
            steps=fit.steps, examples_seen=fit.examples, converged=fit.converged,
            stop_reason=fit.stop_reason,
            holdout_curve=[[step, float(f"{loss:.5g}")] for step, loss in fit.curve] or None,
            test_examples=len(m["correct"]), accuracy_low=low, accuracy_high=high,
            stitch_nonzero=(model.stitch.map.nonzero_fraction()
                            if hasattr(model.stitch.map, "nonzero_fraction") else None),
            correct=m["correct"],
        ), model))
    return results


def replace_span(
    network: nn.Module | Checkpoint,
    from_point: str | int,
    to_point: str | int,
    dataset: Dataset,
    *,
    objectives: tuple[str, ...] = ("match", "task"),
    stitch: str = DEFAULT_STITCH,
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
    config = config or StitchConfig.converging()
    net, _ = _network(network)
    graph = cut_graph(net)
    i, j = graph.point(from_point, granularity), graph.point(to_point, granularity)
    if i.index >= j.index:
        raise PlatoError(f"replace needs from < to, got {i.name} (#{i.index}) and "
                         f"{j.name} (#{j.index})")
    device = resolve_device(config.device)
    acc = evaluate(net.to(device), dataset, device=device)["accuracy"]
    results = []
    for objective in objectives:
        result, _ = stitch_networks(network, network, i.name, j.name, dataset, stitch=stitch,
                                    config=replace(config, objective=objective),
                                    granularity="layer", accuracies=(acc, acc),
                                    graphs=(graph, graph), progress=progress)
        results.append(result)
    return results
