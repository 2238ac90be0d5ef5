"""Executors run cells and hand each outcome back to the driver, which alone writes the store.

Both run groups of cells that share a sender, receiver and seed (`group_jobs`) as one unit, so
the frozen networks run once per batch for the whole group.

    local  groups one after another in this process (the default)
    ray    groups as Ray tasks on a cluster (`address`), GPUs per task optional and fractional so
           several stitches share one GPU; networks and data travel through Ray's object store
    slurm  groups as one SLURM job array (plato.sweep.slurm): inputs and results as files in
           the run folder, so the driver may leave while the tasks run
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from plato.data.datasets import Dataset
from plato.errors import PlatoError
from plato.sweep.cells import CellSettings, run_cells
from plato.sweep.jobs import Job, group_jobs
from plato.sweep.networks import Network
from plato.sweep.slurm import SlurmExecutor, SlurmOptions

OnOutcome = Callable[[Job, dict], None]


class LocalExecutor:
    name = "local"

    def run(self, jobs: list[Job], nets: dict[tuple[str, str], Network], dataset: Dataset,
            settings: CellSettings, on_outcome: OnOutcome) -> None:
        for group in group_jobs(jobs, settings.group_size):
            first = group[0]
            outcomes = run_cells(group, nets[(first.sender, first.sender_role)],
                                 nets[(first.receiver, first.receiver_role)], dataset, settings)
            for job, outcome in zip(group, outcomes, strict=True):
                on_outcome(job, outcome)


# Networks rebuilt on a worker, by identity: each worker process builds each network once.
_WORKER_NETWORKS: dict[str, Network] = {}


def _worker_network(payload: dict) -> Network:
    net = _WORKER_NETWORKS.get(payload["identity"])
    if net is None:
        net = _WORKER_NETWORKS[payload["identity"]] = Network.from_payload(payload)
    return net


def _remote_cells(jobs: list[Job], sender: dict, receiver: dict, dataset: Dataset,
                  settings: CellSettings) -> list[dict]:
    import socket

    outcomes = run_cells(jobs, _worker_network(sender), _worker_network(receiver), dataset,
                         settings)
    host = socket.gethostname()
    return [{**o, "host": host} for o in outcomes]


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, gpus_per_job: float = 0.0,
                 cpus_per_job: float = 1.0, max_in_flight: int | None = None) -> None:
        if gpus_per_job < 0 or cpus_per_job <= 0:
            raise PlatoError("gpus per job must be >= 0 and cpus per job > 0")
        self.address = address
        self.gpus_per_job = gpus_per_job
        self.cpus_per_job = cpus_per_job
        self.max_in_flight = max_in_flight

    def run(self, jobs: list[Job], nets: dict[tuple[str, str], Network], dataset: Dataset,
            settings: CellSettings, on_outcome: OnOutcome) -> None:
        try:
            import ray
        except ImportError:
            raise PlatoError("the ray executor needs Ray: pip install 'ray>=2.9'") from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise PlatoError(f"cannot reach a Ray cluster at {self.address or 'local'}: "
                                 f"{e}") from None
        try:
            self._run(ray, jobs, nets, dataset, settings, on_outcome)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, jobs, nets, dataset, settings, on_outcome) -> None:
        remote = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                            max_retries=0)(_remote_cells)
        data_ref = ray.put(dataset)
        net_refs = {key: ray.put(net.payload()) for key, net in nets.items()}
        # One thread per CPU the task holds, as Ray's workers expect.
        settings = replace(settings, threads=settings.threads or max(1, int(self.cpus_per_job)))
        limit = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        queue, pending = group_jobs(jobs, settings.group_size), {}
        while queue or pending:
            while queue and len(pending) < limit:
                group = queue.pop(0)
                first = group[0]
                ref = remote.remote(group, net_refs[(first.sender, first.sender_role)],
                                    net_refs[(first.receiver, first.receiver_role)], data_ref,
                                    settings)
                pending[ref] = group
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                group = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as e:  # the worker died (OOM kill, node lost): record it
                    outcomes = [{"key": job.key, "started": time.time(), "status": "failed",
                                 "reason": f"worker failed: {type(e).__name__}: {e}"}
                                for job in group]
                for job, outcome in zip(group, outcomes, strict=True):
                    on_outcome(job, outcome)


def make_executor(name: str, address: str | None = None, gpus_per_job: float = 0.0,
                  run_dir: Path | None = None, slurm: SlurmOptions | None = None,
                  progress: bool = True):
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, gpus_per_job=gpus_per_job)
    if name == "slurm":
        if run_dir is None:
            raise PlatoError("the slurm executor needs the run folder")
        return SlurmExecutor(run_dir, slurm, progress)
    raise PlatoError(f"unknown executor '{name}': choose local, ray or slurm")
