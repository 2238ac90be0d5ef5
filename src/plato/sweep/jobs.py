"""The jobs of a sweep: one per stitching-table cell, named by its content key, and grouped
so that the cells of one (sender, receiver, control, seed) share the frozen networks' passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from plato.errors import PlatoError
from plato.models import CutPoint, cut_graph
from plato.sweep.keys import cell_key
from plato.sweep.networks import Network
from plato.sweep.spec import SpecError, SweepSpec


@dataclass(frozen=True)
class Job:
    key: str
    spec: str
    sender: str  # network names, as the spec gives them
    receiver: str
    control: str  # "trained->trained", "random->trained", ...
    seed: int
    sender_point: str  # cut point name: locates the point (at either granularity)
    sender_index: int  # its index at the granularity it was found: orders a table's axes
    receiver_point: str
    receiver_index: int

    @property
    def sender_role(self) -> str:
        return self.control.split("->")[0]

    @property
    def receiver_role(self) -> str:
        return self.control.split("->")[1]


@dataclass(frozen=True)
class TableSpec:
    """One (pair, control) table of a sweep: its two networks in their roles and points."""

    sender_name: str
    receiver_name: str
    control: str
    sender: Network
    receiver: Network
    sender_points: list[CutPoint]
    receiver_points: list[CutPoint]


def spec_points(spec: SweepSpec, net: Network) -> list[CutPoint]:
    chosen = spec.points[net.name]
    if chosen == "all":
        return net.graph.points(spec.granularity)
    try:
        return [net.graph.point(p, spec.granularity) for p in chosen]
    except PlatoError as e:
        raise SpecError(f"spec field 'points.{net.name}': {e}") from None


def planned_cells(spec: SweepSpec, architectures: dict[str, nn.Module]) -> int:
    """How many cells the spec asks for, from its networks' architectures alone (before any
    network is trained): pairs x controls x seeds x sender points x receiver points."""
    points = {}
    for name, model in architectures.items():
        chosen = spec.points[name]
        points[name] = ([p.name for p in cut_graph(model).points(spec.granularity)]
                        if chosen == "all" else [str(p) for p in chosen])
    per_pair = {(s, r): len(set(points[s]) & set(points[r])) if spec.diagonal
                else len(points[s]) * len(points[r]) for s, r in spec.pairs}
    return sum(len(spec.controls) * len(spec.seeds) * n for n in per_pair.values())


def spec_tables(spec: SweepSpec, nets: dict[tuple[str, str], Network]) -> list[TableSpec]:
    tables = []
    for s_name, r_name in spec.pairs:
        for control in spec.controls:
            s_role, r_role = control.split("->")
            sender, receiver = nets[(s_name, s_role)], nets[(r_name, r_role)]
            tables.append(TableSpec(s_name, r_name, control, sender, receiver,
                                    spec_points(spec, sender), spec_points(spec, receiver)))
    return tables


def build_jobs(spec: SweepSpec, nets: dict[tuple[str, str], Network],
               dataset_fingerprint: str) -> list[Job]:
    jobs = []
    saliency = spec.interpret.saliency.to_dict() if spec.interpret.saliency else None
    for t in spec_tables(spec, nets):
        for seed in spec.seeds:
            for sp in t.sender_points:
                for rp in t.receiver_points:
                    if spec.diagonal and rp.name != sp.name:
                        continue
                    key = cell_key(t.sender.identity, t.receiver.identity, sp.name, rp.name,
                                   spec.stitch, spec.resize, spec.stitch_config, seed,
                                   dataset_fingerprint, saliency)
                    jobs.append(Job(key, spec.name, t.sender_name, t.receiver_name,
                                    t.control, seed, sp.name, sp.index, rp.name, rp.index))
    return jobs


def group_jobs(jobs: list[Job], max_cells: int) -> list[list[Job]]:
    """Jobs that can share passes: same sender, receiver, control and seed, in chunks of at most
    `max_cells` (a chunk is what a crash can lose), in first-appearance order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.sender, job.receiver, job.control, job.seed), []).append(job)
    return [group[i:i + max_cells] for group in groups.values()
            for i in range(0, len(group), max_cells)]
