"""How a sweep runs, apart from what it computes: its limits and the SLURM executor's options
(read by the CLI's help without importing the executors)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CELLS = 200_000  # a sweep of more asks first (--max-cells): days of work on one machine
GROUP_SIZE = 64  # cells sharing one pass of the frozen networks (a Ray or SLURM task)


@dataclass
class SlurmOptions:
    """What each task asks the scheduler for (sbatch's options, through submitit)."""

    partition: str | None = None
    time_min: int = 60  # each task's time limit (a group of cells)
    cpus_per_job: int = 1
    gpus_per_job: int = 0
    mem_gb: float | None = None
    account: str | None = None
    array_parallelism: int = 64  # tasks of the array running at once, at most
    extra: dict[str, str] = field(default_factory=dict)  # more sbatch options: {"qos": "low"}
    setup: list[str] = field(default_factory=list)  # shell lines before each task: module load

    def parameters(self, name: str) -> dict:
        params = {"name": name, "timeout_min": self.time_min,
                  "cpus_per_task": self.cpus_per_job,
                  "slurm_array_parallelism": self.array_parallelism}
        for key, value in (("slurm_partition", self.partition), ("mem_gb", self.mem_gb),
                           ("slurm_account", self.account)):
            if value is not None:
                params[key] = value
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params
