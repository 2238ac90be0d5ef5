"""Networks of a sweep, its jobs (one per table cell, keyed by content) and running one cell.

A job's key is a SHA-256 of everything that determines its result: both networks' identities
(weights hash, or architecture + init seed for random controls), the two cut points, the stitch
type and resize, the objective and stitch recipe, the seed, and the dataset's content. The
store skips keys already done, so reruns never repeat finished work.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from plato.checkpoint import load_checkpoint, save_checkpoint
from plato.data.datasets import Dataset
from plato.errors import PlatoError, TrainingError
from plato.models import create_model
from plato.models.cuts import CutGraph, CutPoint
from plato.stitch.layers import NotStitchable
from plato.stitch.run import stitch_grid
from plato.sweep.spec import SpecError, SweepSpec
from plato.train import Recipe, evaluate, train


def content_key(obj) -> str:
    """SHA-256 of a JSON-able description: the identity of a result."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    key: str
    spec: str
    sender: str
    receiver: str
    control: str
    seed: int
    sender_point: str
    sender_index: int
    receiver_point: str
    receiver_index: int

    @property
    def sender_role(self) -> str:
        return self.control.split("->")[0]

    @property
    def receiver_role(self) -> str:
        return self.control.split("->")[1]


@dataclass
class Network:
    name: str
    role: str  # "trained" or "random"
    model: nn.Module
    identity: str
    accuracy: float
    checkpoint: str | None = None
    init_seed: int | None = None
    _graph: CutGraph | None = None

    @property
    def graph(self) -> CutGraph:
        if self._graph is None:
            self._graph = CutGraph(self.model)
        return self._graph

    def payload(self) -> dict:
        """What a remote worker needs to rebuild this network: no files, no pickled modules."""
        return {"name": self.name, "role": self.role, "identity": self.identity,
                "accuracy": self.accuracy, "model": self.model.plato_name,
                "config": self.model.plato_config,
                "state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    @classmethod
    def from_payload(cls, payload: dict) -> Network:
        model = create_model(payload["model"], **payload["config"])
        model.load_state_dict(payload["state"])
        return cls(payload["name"], payload["role"], model.eval(), payload["identity"],
                   payload["accuracy"])


# --------------------------------------------------------------------------------------------
# Networks: load or train the trained ones, initialise the random controls
# --------------------------------------------------------------------------------------------

def _train_network(spec_entry: dict, dataset: Dataset, path: Path, progress: bool) -> None:
    options = {k: spec_entry[k] for k in ("width", "residual", "stem") if k in spec_entry}
    recipe_kw = {k: v for k, v in spec_entry.items() if k not in ("model", *options)}
    recipe = Recipe(**{**recipe_kw, "device": recipe_kw.get("device", "auto")})
    torch.manual_seed(recipe.seed)
    model = create_model(spec_entry["model"], num_classes=dataset.num_classes,
                         input_shape=dataset.input_shape, **options)
    result = train(model, dataset, recipe, progress=progress)
    save_checkpoint(path, model, dataset=dataset.name, recipe=recipe.to_dict(), seed=recipe.seed,
                    test_accuracy=result.test_accuracy, train_seconds=result.seconds)


def prepare_networks(spec: SweepSpec, dataset: Dataset, run_dir: Path, device: torch.device,
                     progress: bool = True) -> dict[tuple[str, str], Network]:
    roles = {role for c in spec.controls for role in c.split("->")}
    nets: dict[tuple[str, str], Network] = {}
    for name, entry in spec.networks.items():
        if entry.checkpoint is not None:
            path = entry.checkpoint
        else:
            digest = content_key([entry.train, dataset.fingerprint()])[:12]
            path = run_dir / "networks" / f"{name}-{digest}.ckpt"
            if not path.exists():
                print(f"training network '{name}' ({entry.train['model']})", file=sys.stderr,
                      flush=True)
                try:
                    _train_network(entry.train, dataset, path, progress)
                except SpecError:
                    raise
                except PlatoError as e:
                    raise SpecError(f"spec field 'networks.{name}.train': {e}") from None
        try:
            ckpt = load_checkpoint(path, device=device)
        except PlatoError as e:
            raise SpecError(f"spec field 'networks.{name}': {e}") from None
        cfg = ckpt.meta["config"]
        if tuple(cfg["input_shape"]) != dataset.input_shape or cfg["num_classes"] != \
                dataset.num_classes:
            raise SpecError(
                f"spec field 'networks.{name}': {path} takes {cfg['num_classes']} classes of "
                f"shape {tuple(cfg['input_shape'])}, the dataset has {dataset.num_classes} of "
                f"shape {dataset.input_shape}")
        if "trained" in roles:
            acc = evaluate(ckpt.model, dataset, device=device)["accuracy"]
            nets[(name, "trained")] = Network(name, "trained", ckpt.model, ckpt.content_hash,
                                              acc, str(path))
        if "random" in roles:
            init_seed = zlib.crc32(f"{spec.random_seed}:{name}".encode())
            torch.manual_seed(init_seed)
            model = create_model(ckpt.name, **cfg).to(device).eval()
            identity = content_key(["random", ckpt.name, cfg, init_seed])
            acc = evaluate(model, dataset, device=device)["accuracy"]
            nets[(name, "random")] = Network(name, "random", model, identity, acc,
                                             init_seed=init_seed)
    return nets


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------

def spec_points(spec: SweepSpec, net: Network) -> list[CutPoint]:
    chosen = spec.points[net.name]
    if chosen == "all":
        return net.graph.points(spec.granularity)
    try:
        return [net.graph.point(p, spec.granularity) for p in chosen]
    except PlatoError as e:
        raise SpecError(f"spec field 'points.{net.name}': {e}") from None


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
    recipe = {k: v for k, v in spec.stitch_config(0).to_dict().items()
              if k not in ("device", "seed", "activation_cache")}  # (same results whichever)
    if not recipe["more_epochs"]:  # then `improving` decides nothing: keys stay those of
        del recipe["more_epochs"], recipe["improving"]  # stores written before these fields
    if not recipe["lstsq_examples"]:  # every example, as before the field
        del recipe["lstsq_examples"]
    jobs = []
    for t in spec_tables(spec, nets):
        for seed in spec.seeds:
            for sp in t.sender_points:
                for rp in t.receiver_points:
                    key = content_key({
                        "sender": t.sender.identity, "receiver": t.receiver.identity,
                        "sender_point": sp.name, "receiver_point": rp.name,
                        "stitch": spec.stitch, "resize": spec.resize, "recipe": recipe,
                        "seed": seed, "data": dataset_fingerprint,
                    })
                    jobs.append(Job(key, spec.name, t.sender_name, t.receiver_name,
                                    t.control, seed, sp.name, sp.index, rp.name, rp.index))
    return jobs


# --------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------

@dataclass
class CellSettings:
    """What a cell needs from the spec, small enough to ship to a worker."""

    stitch: str
    resize: str
    objective: str
    recipe: dict
    granularity: str
    keep_stitch: bool
    device: str = "auto"
    # CPU threads per cell (None: torch's default). Floating-point sums depend on the thread
    # count, so two runs give bit-identical cells only with the same number of threads.
    threads: int | None = None
    # At most this many cells share one pass of the frozen networks (and are lost together if
    # the process dies). Larger groups save more; memory grows only with stitch parameters.
    group_size: int = 64

    @classmethod
    def from_spec(cls, spec: SweepSpec, device: str, threads: int | None = None,
                  group_size: int = 64) -> CellSettings:
        return cls(spec.stitch, spec.resize, spec.objective, dict(spec.recipe), spec.granularity,
                   spec.keep_stitches, device, threads, group_size)

    def to_dict(self) -> dict:
        return asdict(self)


def group_jobs(jobs: list[Job], max_cells: int) -> list[list[Job]]:
    """Jobs that can share passes: same sender, receiver, control and seed, in chunks of at most
    `max_cells` (a chunk is what a crash can lose), in first-appearance order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.sender, job.receiver, job.control, job.seed), []).append(job)
    return [group[i:i + max_cells] for group in groups.values()
            for i in range(0, len(group), max_cells)]


def _failure(e: BaseException) -> dict:
    if isinstance(e, NotStitchable):
        return {"status": "unstitchable", "reason": str(e)}
    if isinstance(e, TrainingError):
        return {"status": "failed", "reason": f"non-finite loss: {e}"}
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
        return {"status": "failed", "reason": f"out of memory: {str(e).splitlines()[0]}"}
    if isinstance(e, PlatoError):
        return {"status": "failed", "reason": str(e)}
    where = " / ".join(traceback.format_exception(e, limit=-2)[-3:]).replace("\n", " ")
    return {"status": "failed", "reason": f"{type(e).__name__}: {e} | {where.strip()}"}


def run_cells(jobs: list[Job], sender: Network, receiver: Network, dataset: Dataset,
              settings: CellSettings) -> list[dict]:
    """Run a group of cells that share sender, receiver and seed, with shared passes.

    Never raises for the cells' own failures: each outcome says what happened to its cell.
    """
    from plato.stitch.fit import StitchConfig

    started = time.time()
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        seed = jobs[0].seed
        config = StitchConfig(objective=settings.objective, seed=seed, device=settings.device,
                              **settings.recipe)
        grid = stitch_grid(
            sender.model, receiver.model, [(j.sender_point, j.receiver_point) for j in jobs],
            dataset, stitch=settings.stitch, config=config, granularity=settings.granularity,
            resize=settings.resize, accuracies=(sender.accuracy, receiver.accuracy),
            graphs=(sender.graph, receiver.graph))
    except Exception as e:  # a failure of the shared part fails every cell of the group
        return [{"key": j.key, "started": started, **_failure(e)} for j in jobs]
    finally:
        torch.set_num_threads(threads)
    outcomes = []
    for job, (result, model) in zip(jobs, grid, strict=True):
        outcome = {"key": job.key, "started": started}
        if isinstance(result, Exception):
            outcome.update(_failure(result))
        else:
            result = result.to_dict()
            result["sender"], result["receiver"] = job.sender, job.receiver
            outcome.update(status="done", result=result)
            if settings.keep_stitch:
                outcome["stitch_state"] = {k: v.detach().cpu().contiguous()
                                           for k, v in model.stitch.state_dict().items()}
        outcomes.append(outcome)
    return outcomes
