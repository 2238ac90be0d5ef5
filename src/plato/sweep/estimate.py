"""A sweep's cost before it starts, roughly: one timed training step of each network's
architecture on this device, times the steps the spec asks for.

    networks   epochs x training examples of each network still to train, from a timed
               float32 training step at the stitch's batch size
    cells      per stitchable cell: its expected SGD steps x a step through the receiver from
               its cut point on (the shared sender pass is cached; the receiver suffix, forward
               and backward, is each cell's own: the share of the receiver's points after the
               cut), the closed form, the looks and the measurement included (OVERHEAD)

A converging cell's steps are not known before it runs: CONVERGING_STEPS is what they were on
average in BENCHMARKS.md. The similarity tables are not counted (their own bar shows them).
The estimate is within a factor of about two; the sweep's bar gives the measured rate once
cells finish.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plato.data.datasets import Dataset
from plato.device import autocast
from plato.errors import PlatoError
from plato.models import CutGraph, cut_graph
from plato.stitch.config import StitchConfig
from plato.sweep.entries import DistilledNetwork, PrunedNetwork, TrainedNetwork
from plato.sweep.networks import architectures, cached_checkpoint, training_data
from plato.sweep.spec import SpecError, SweepSpec

CONVERGING_STEPS = 450  # a converging cell's SGD steps on average (BENCHMARKS.md, issue 16)
# A cell's time per step through its receiver suffix, over the probe's: the closed form, the
# looks and the test measurement add to it, the grid's threads and shared passes take from it.
# At 1 the estimates came within a factor of two of measured runs on the 2-core CPU, one over
# and one under (BENCHMARKS.md, issue 17).
OVERHEAD = 1.0


@dataclass
class Estimate:
    networks: float  # seconds training the networks not trained yet
    cells: float  # seconds fitting and measuring the stitch cells

    @property
    def seconds(self) -> float:
        return self.networks + self.cells

    def describe(self) -> str:
        parts = [f"{duration(self.cells)} for the cells"]
        if self.networks:
            parts.insert(0, f"{duration(self.networks)} training networks")
        return f"about {duration(self.seconds)} on this machine ({', '.join(parts)}; rough)"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def step_seconds(model: nn.Module, batch: int, dataset: Dataset, device: torch.device,
                 precision: str | None = None) -> float:
    """The wall time of one forward and backward pass of `model` on a random batch of
    `batch` inputs of the dataset's shape, after an untimed one (allocation, kernels): as in
    training (`precision` None: float32, weights updated), or as a stitch's task loss runs a
    frozen receiver (eval mode, no weight gradients, channels last, `precision`)."""
    frozen = precision is not None
    model = copy.deepcopy(model).to(device).train(not frozen)
    x = torch.randn(batch, *dataset.input_shape, device=device)
    if frozen:
        model.requires_grad_(False)
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = torch.randint(0, dataset.num_classes, (batch,), device=device)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with autocast(device, precision or "fp32"):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def cell_steps(config: StitchConfig, train_examples: int) -> float:
    """A cell's SGD steps: the fixed budget's, or a converging cell's on average; for the
    closed form alone, its pass over the training split (a forward pass: a third of a step)."""
    batches = max(1, train_examples // config.batch_size)
    if config.objective == "lstsq":
        return batches / 3
    if config.objective == "translate":  # a pass over the anchors
        return max(1, min(config.anchors, train_examples) // config.batch_size) / 3
    if config.converges:  # final+task: two stages, each to its own convergence
        stages = 2 if config.objective == "final+task" else 1
        return stages * min(config.max_steps, max(config.min_steps, CONVERGING_STEPS))
    return (config.sgd_epochs + config.more_epochs / 2) * batches


def estimate_sweep(spec: SweepSpec, dataset: Dataset, whole: Dataset, run_dir: Path,
                   device: torch.device, archs: dict[str, nn.Module] | None = None) -> Estimate:
    """What `spec` will cost on `device`, from one timed step of each network's architecture
    at the stitch's batch size: the networks not cached in `run_dir` yet, and every cell
    (a vector sender point into a spatial receiver point is not stitchable: no cost).
    `archs`: the networks' architectures, where the caller built them already."""
    config = spec.stitch_config
    batch = config.batch_size
    archs = archs or architectures(spec, dataset)
    networks = 0.0
    for name, entry in spec.networks.items():
        if isinstance(entry, TrainedNetwork):
            data = training_data(entry, dataset, whole)
            if not cached_checkpoint(entry, data, run_dir).exists():
                step = step_seconds(archs[name], batch, dataset, device)
                networks += step * entry.recipe.epochs * len(data.train) / batch
        elif entry.source is not None and not any(
                (run_dir / "networks").glob(f"{name}-*.ckpt")):  # (its key needs its source)
            recipe = entry.finetune if isinstance(entry, PrunedNetwork) else \
                entry.student.recipe
            if recipe is not None:  # fine-tuning or distilling: epochs of training
                step = step_seconds(archs[name], batch, dataset, device)
                if isinstance(entry, DistilledNetwork):  # and the teacher's forward pass
                    step += step_seconds(archs[entry.source], batch, dataset, device) / 3
                networks += step * recipe.epochs * len(dataset.train) / batch
    step = {name: step_seconds(model, batch, dataset, device, config.precision)
            for name, model in archs.items()}
    graphs = {name: cut_graph(model) for name, model in archs.items()}
    points = {name: graph.points(spec.granularity) for name, graph in graphs.items()}
    chosen = {name: _chosen(spec, name, graph) for name, graph in graphs.items()}
    train = len(dataset.train)
    if config.converges:
        train -= config.holdout_examples(train)
    per_cell = cell_steps(config, train) * OVERHEAD
    cells = 0.0
    for s, r in spec.pairs:
        for sp in (p for p in points[s] if p.name in chosen[s]):
            for i, rp in enumerate(points[r]):
                if rp.name not in chosen[r] or (len(sp.shape) == 1 and len(rp.shape) > 1) \
                        or (spec.diagonal and rp.name != sp.name):
                    continue
                share = (len(points[r]) - i) / len(points[r])  # of the receiver, after rp
                cells += per_cell * step[r] * share
    cells *= len(spec.controls) * len(spec.seeds)
    return Estimate(networks=networks, cells=cells)


def _chosen(spec: SweepSpec, name: str, graph: CutGraph) -> set[str]:
    """The names of the points the spec stitches `name` at."""
    if spec.points[name] == "all":
        return {p.name for p in graph.points(spec.granularity)}
    try:
        return {graph.point(p, spec.granularity).name for p in spec.points[name]}
    except PlatoError as e:
        raise SpecError(f"spec field 'points.{name}': {e}") from None
