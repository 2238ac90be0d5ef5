"""Running a sweep: networks, jobs, the executor, the store, and a progress bar."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from plato.checkpoint import load_checkpoint
from plato.data.datasets import Dataset, load_dataset
from plato.data.images import shown_images
from plato.device import resolve_device
from plato.errors import printable
from plato.files import write_safetensors
from plato.sweep.cells import CellSettings
from plato.sweep.estimate import estimate_sweep
from plato.sweep.executors import make_executor
from plato.sweep.interpret import run_inversions
from plato.sweep.jobs import Job, build_jobs, planned_cells, spec_points
from plato.sweep.lock import hold_run_folder
from plato.sweep.networks import Network, architectures, prepare_networks, random_control
from plato.sweep.options import GROUP_SIZE, MAX_CELLS, SlurmOptions
from plato.sweep.provenance import check_same_spec, spec_identity
from plato.sweep.similarity import run_similarities
from plato.sweep.slurm import task_status
from plato.sweep.spec import InterpretSpec, SpecError, SweepSpec
from plato.sweep.store import Store

if TYPE_CHECKING:
    import torch



@dataclass
class SweepSummary:
    spec: str
    store: str
    cells: int
    skipped: int  # already in the store
    done: int
    failed: int
    unstitchable: int
    seconds: float
    similarity_tables: int = 0  # (pair, control) similarity grids computed this run
    failed_stored: int = 0  # the spec's cells failed in the store at the end (this run's too)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sweep_dataset(spec: SweepSpec, whole: Dataset | None = None) -> Dataset:
    """The spec's dataset with its subsets (`whole`: the dataset already loaded)."""
    ds = whole or load_dataset(spec.dataset.name, root=spec.dataset.root)
    if spec.dataset.train_subset or spec.dataset.test_subset:
        ds = ds.subset(train=spec.dataset.train_subset, test=spec.dataset.test_subset)
    return ds


def _announce(spec: SweepSpec, dataset: Dataset, max_cells: int, progress: bool,
              whole: Dataset, run_dir: Path, device: torch.device) -> None:
    """Say how many cells the spec asks for, and roughly how long they and the networks still
    to train will take, before any work; refuse more than `max_cells`."""
    if "stitch" not in spec.measures:
        return
    archs = architectures(spec, dataset)
    planned = planned_cells(spec, archs)
    if planned > max_cells:
        raise SpecError(f"the spec asks for {planned:,} cells ({len(spec.pairs)} pairs x "
                        f"{len(spec.controls)} controls x {len(spec.seeds)} seeds x their "
                        f"points), more than {max_cells:,}: narrow pairs, points or seeds, "
                        "or raise --max-cells if you mean it")
    if progress:
        cost = estimate_sweep(spec, dataset, whole, run_dir, device, archs)
        print(f"sweep {spec.name}: {planned:,} cells ({len(spec.pairs)} pairs x "
              f"{len(spec.controls)} controls x {len(spec.seeds)} seeds x their points); "
              f"{cost.describe()}", file=sys.stderr, flush=True)
        extra = []
        if spec.interpret.ood and spec.stitch_config.objective != "match":
            extra.append(f"{planned_cells(match_variant(spec), archs):,} autoencoder (match) "
                         f"cells as spec {spec.name}-match")
        if spec.interpret.saliency is not None:
            extra.append(f"saliency of each cell on {spec.interpret.saliency.images} images")
        if spec.interpret.invert is not None:
            extra.append("a decoder per network and cut point")
        if extra:
            print(f"interpret adds {'; '.join(extra)} (not in the estimate)", file=sys.stderr,
                  flush=True)


def _say_where_cells_are(name: str, specs_of_cells: dict[str, str]) -> None:
    """A cell is computed once per store: one this spec shares with another spec name
    (a renamed spec, the same cells in two specs) stays listed under the name it was computed
    for. Say so, rather than leave this spec's tables silently short of it."""
    elsewhere: dict[str, int] = {}
    for owner in specs_of_cells.values():
        if owner != name:
            elsewhere[owner] = elsewhere.get(owner, 0) + 1
    if elsewhere:
        where = ", ".join(f"{n} under '{owner}'" for owner, n in sorted(elsewhere.items()))
        print(f"{sum(elsewhere.values())} of the cells of spec '{name}' were computed in this "
              f"store for another spec name ({where}): they are not computed again, and their "
              f"results are listed under that name (plato table --spec NAME, or --all-specs); "
              f"for tables of '{name}' alone, run it into another --out", file=sys.stderr,
              flush=True)


def run_sweep(spec: SweepSpec, out_dir: str | Path | None = None, *, executor: str = "local",
              address: str | None = None, gpus_per_job: float = 0.0,
              retry_failed: bool = False, device: str = "auto", threads: int | None = None,
              group_size: int = GROUP_SIZE, progress: bool = True, wait: bool = False,
              max_cells: int = MAX_CELLS, slurm: SlurmOptions | None = None) -> SweepSummary:
    start = time.perf_counter()
    run_dir = Path(out_dir) if out_dir else Path("runs") / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    with hold_run_folder(run_dir, wait):  # one sweep per run folder: no work done twice
        executor_ = make_executor(executor, address, gpus_per_job, run_dir, slurm, progress)
        whole = load_dataset(spec.dataset.name, root=spec.dataset.root)
        dataset = sweep_dataset(spec, whole)
        dev = resolve_device(device)  # once: networks, similarity tables and cells all use it
        _announce(spec, dataset, max_cells, progress, whole, run_dir, dev)
        identity = spec_identity(spec, dataset)
        with Store(run_dir / "results.sqlite") as store:
            check_same_spec(spec.name, store.sweep_identity(spec.name), identity)
            nets = prepare_networks(spec, dataset, run_dir, dev, progress, whole=whole)
            _record(store, spec, dataset, identity, nets)
            grids = run_similarities(spec, nets, dataset, store, dev, progress)
            run = _CellRun(store, run_dir, executor_, dev, threads, group_size, retry_failed,
                           progress)
            if spec.interpret.saliency is not None:  # the images each cell's maps show
                shown = shown_images(dataset, spec.interpret.saliency.shown)
                write_safetensors(run_dir / "interpret" / "originals-saliency.safetensors",
                                  {"images": dataset.test.images[shown]})
            jobs, todo, counts = run.cells(spec, nets, dataset)
            if spec.interpret.ood and spec.stitch_config.objective != "match":
                variant = match_variant(spec)
                variant_identity = spec_identity(variant, dataset)
                check_same_spec(variant.name, store.sweep_identity(variant.name),
                                variant_identity)
                _record(store, variant, dataset, variant_identity, nets)
                run.cells(variant, nets, dataset)
            if spec.interpret.invert is not None:
                inverted = inversion_networks(spec, nets, dataset, dev)
                run_inversions(spec.name, inverted,
                               {n.name: spec_points(spec, n) for n in inverted}, dataset, store,
                               run_dir, spec.interpret.invert, dev, progress)
            failed_stored = list(store.statuses([j.key for j in jobs]).values()).count("failed")
            store.checkpoint()  # the store file alone is the whole store (a copy reads whole)
        return SweepSummary(spec.name, str(run_dir / "results.sqlite"), len(jobs),
                            len(jobs) - len(todo), counts["done"], counts["failed"],
                            counts["unstitchable"], time.perf_counter() - start, grids,
                            failed_stored)


def _record(store: Store, spec: SweepSpec, dataset: Dataset, identity: dict,
            nets: dict) -> None:
    """The spec (its YAML and identity) and its networks in the store."""
    store.record_sweep(spec.name, spec.source, dataset.name, spec.granularity, identity)
    for net in nets.values():
        store.record_network(spec.name, net.name, net.role, net.model.plato_name, net.identity,
                             net.checkpoint, net.init_seed, net.accuracy, net.compression,
                             net.trained_on)


def run_status(run_dir: str | Path) -> dict:
    """Where a sweep stands, with no driver running: its cells by status and, for the SLURM
    executor, its tasks (queued, running, finished and waiting to be merged)."""
    run_dir = Path(run_dir)
    with Store(run_dir / "results.sqlite", create=False) as db:
        cells = db.cells()
    counts = cells.status.value_counts().to_dict() if len(cells) else {}
    status = {"cells": {k: int(v) for k, v in counts.items()}}
    if (run_dir / "slurm" / "submitted.json").exists():
        status["slurm"] = task_status(run_dir)
    return status


def inversion_networks(spec: SweepSpec, nets: dict, dataset: Dataset,
                       device: torch.device) -> list[Network]:
    """Every trained network of the spec, then each one's random control (the sweep's own
    where a control uses it, else made the same way): reconstructions compare the two."""
    trained = [n for n in nets.values() if n.role == "trained"]
    controls = [nets.get((n.name, "random")) or random_control(
        n.name, load_checkpoint(n.checkpoint, device=device), spec.random_seed, dataset,
        device) for n in trained]
    return trained + controls


def match_variant(spec: SweepSpec) -> SweepSpec:
    """The spec's autoencoder twin (interpret.ood): each trained->trained cell's stitch fitted
    to the receiver's own activation (`match`), stored as spec NAME-match beside the spec's
    own (vanilla) cells, so the report sets them side by side."""
    return replace(spec, name=f"{spec.name}-match", measures=["stitch"],
                   controls=[c for c in spec.controls if c == "trained->trained"]
                   or ["trained->trained"],
                   stitch_config=replace(spec.stitch_config, objective="match"),
                   interpret=InterpretSpec())


class _CellRun:
    """Runs a spec's missing cells through the executor, storing each outcome as it comes."""

    def __init__(self, store: Store, run_dir: Path, executor, device, threads: int | None,
                 group_size: int, retry_failed: bool, progress: bool) -> None:
        self.store, self.run_dir, self.executor = store, run_dir, executor
        self.device, self.threads, self.group_size = device, threads, group_size
        self.retry_failed, self.progress = retry_failed, progress

    def cells(self, spec: SweepSpec, nets: dict, dataset: Dataset
              ) -> tuple[list[Job], list[Job], dict[str, int]]:
        """(the spec's jobs, those run now, the outcomes' counts)."""
        from tqdm import tqdm

        store, run_dir = self.store, self.run_dir
        jobs = (build_jobs(spec, nets, dataset.fingerprint())
                if "stitch" in spec.measures else [])
        statuses = store.statuses()
        todo = [j for j in jobs if j.key not in statuses
                or (self.retry_failed and statuses[j.key] == "failed")]
        _say_where_cells_are(spec.name, store.cell_specs([j.key for j in jobs]))
        counts = {"done": 0, "failed": 0, "unstitchable": 0}
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"sweep {spec.name}",
                   unit="cell", disable=not self.progress, file=sys.stderr, dynamic_ncols=True)

        def on_outcome(job: Job, outcome: dict) -> None:
            stitch_file = None
            state = outcome.pop("stitch_state", None)
            if state is not None:
                path = write_safetensors(
                    run_dir / "stitches" / f"{job.key[:24]}.safetensors", state,
                    {"key": job.key, "sender": job.sender, "receiver": job.receiver,
                     "sender_point": job.sender_point, "receiver_point": job.receiver_point})
                stitch_file = str(path.relative_to(run_dir))
            maps = outcome.pop("saliency_maps", None)
            if maps is not None:  # the pictures of the cell's saliency, for the report
                path = write_safetensors(
                    run_dir / "interpret" / f"{job.key[:24]}-saliency.safetensors", maps,
                    {"key": job.key})
                outcome["result"]["saliency_file"] = str(path.relative_to(run_dir))
            store.record_cell(job, outcome["status"], result=outcome.get("result"),
                              reason=outcome.get("reason"), started=outcome["started"],
                              stitch_file=stitch_file, host=outcome.get("host"),
                              correct=outcome.get("correct"))
            counts[outcome["status"]] += 1
            bar.set_postfix(done=counts["done"], failed=counts["failed"],
                            nan=counts["unstitchable"])
            bar.update(1)
            if outcome["status"] == "failed" and self.progress:
                bar.write(printable(f"cell failed: {job.sender}:{job.sender_point} -> "
                                    f"{job.receiver}:{job.receiver_point} ({job.control}, "
                                    f"seed {job.seed}): {outcome.get('reason')}"),
                          file=sys.stderr)

        settings = CellSettings.from_spec(spec, self.device, self.threads, self.group_size)
        if todo:
            self.executor.run(todo, nets, dataset, settings, on_outcome)
        bar.close()
        return jobs, todo, counts
