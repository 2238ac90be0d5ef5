"""The SLURM executor: a sweep's groups of cells as one SLURM job array, submitted through
submitit, their results coming home through files in the run folder.

Design: a task never touches the store. It writes its group's outcomes to
`RUN/slurm/results/GROUP.safetensors` (tensors, and the rest as JSON in the header; written
whole or not at all), and the driver merges each such file into the store as it appears, then
deletes it. So the driver may leave while tasks run (a sweep left overnight): the next
`plato sweep` of the run folder merges what finished meanwhile before anything else, each
outcome recorded once (a cell already in the store is never recorded again), waits for the
tasks still queued or running (`squeue`) instead of submitting them again, and submits only
the groups no task holds. A task that ended without a result file (cancelled, preempted, out
of time or memory) has its cells recorded failed with the reason and its log's path; `plato
sweep --retry-failed` submits them again. SQLite stays on one machine, written by one process
(its locking is not to be trusted on the network file systems clusters share).

The inputs are written once per run under `RUN/slurm/inputs/` (the dataset and each network
as safetensors), so the run folder must be on a file system the compute nodes share, as
submitit's own folder must (`RUN/slurm/logs/`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from plato.data.datasets import Dataset, Split
from plato.errors import PlatoError
from plato.files import write_file, write_safetensors
from plato.sweep.cells import CellSettings, run_cells
from plato.sweep.jobs import Job, group_jobs
from plato.sweep.networks import Network
from plato.sweep.options import SlurmOptions

# Paths by convention local to each node: a run folder there is not seen by the others.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")
POLL_SECONDS = 1.0


def group_id(group: list[Job]) -> str:
    return hashlib.sha256("".join(sorted(j.key for j in group)).encode()).hexdigest()[:20]


# -- inputs and results: files in the run folder ----------------------------------------------

def write_inputs(folder: Path, nets: dict[tuple[str, str], Network], dataset: Dataset) -> None:
    """The dataset and every network, once (a file already there is the same content: its
    name holds the identity or fingerprint)."""
    inputs = folder / "inputs"
    data_path = inputs / f"dataset-{dataset.fingerprint()[:16]}.safetensors"
    if not data_path.exists():
        meta = {"name": dataset.name, "classes": dataset.classes, "mean": dataset.mean,
                "std": dataset.std, "fingerprint": dataset.fingerprint()}
        _save_whole({"train_images": dataset.train.images,
                                "train_labels": dataset.train.labels,
                                "test_images": dataset.test.images,
                                "test_labels": dataset.test.labels}, data_path, meta)
    for net in nets.values():
        path = inputs / f"network-{net.identity[:32]}.safetensors"
        if not path.exists():
            payload = net.payload()
            state = payload.pop("state")
            _save_whole(state, path, payload)


def _save_whole(tensors: dict, path: Path, meta: dict) -> None:
    """Tensors and JSON metadata as one safetensors file, written whole or not at all."""
    write_safetensors(path, tensors, {"plato": json.dumps(meta)})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["plato"])


_TASK_CACHE: dict[str, object] = {}  # a task process builds each input once


def _load_dataset(folder: Path, fingerprint: str) -> Dataset:
    path = folder / "inputs" / f"dataset-{fingerprint[:16]}.safetensors"
    if str(path) not in _TASK_CACHE:
        t, meta = _read(path)
        _TASK_CACHE[str(path)] = Dataset(
            meta["name"], Split(t["train_images"], t["train_labels"]),
            Split(t["test_images"], t["test_labels"]), meta["classes"], tuple(meta["mean"]),
            tuple(meta["std"]), _fingerprint=meta["fingerprint"])
    return _TASK_CACHE[str(path)]


def _load_network(folder: Path, identity: str) -> Network:
    path = folder / "inputs" / f"network-{identity[:32]}.safetensors"
    if str(path) not in _TASK_CACHE:
        state, payload = _read(path)
        _TASK_CACHE[str(path)] = Network.from_payload({**payload, "state": state})
    return _TASK_CACHE[str(path)]


def run_task(folder: str, group: list[Job], sender: str, receiver: str, fingerprint: str,
             settings: CellSettings) -> int:
    """One array task: a group of cells, its outcomes written to the results folder."""
    import socket

    folder_ = Path(folder)
    outcomes = run_cells(group, _load_network(folder_, sender), _load_network(folder_, receiver),
                         _load_dataset(folder_, fingerprint), settings)
    host = socket.gethostname()
    write_results(folder_ / "results" / f"{group_id(group)}.safetensors",
                  [{**o, "host": host} for o in outcomes])
    return len(outcomes)


def write_results(path: Path, outcomes: list[dict]) -> None:
    """Outcomes as one safetensors file: their tensors (which examples were right, a kept
    stitch, saliency maps) under `i/...`, the rest as JSON."""
    tensors, rows = {}, []
    for i, outcome in enumerate(outcomes):
        row = dict(outcome)
        correct = row.pop("correct", None)
        if correct is not None:
            tensors[f"{i}/correct"] = torch.frombuffer(bytearray(correct), dtype=torch.uint8)
        for kind in ("stitch_state", "saliency_maps"):
            for name, t in (row.pop(kind, None) or {}).items():
                tensors[f"{i}/{kind}/{name}"] = t
        rows.append(row)
    _save_whole(tensors, path, {"outcomes": rows})


def read_results(path: Path) -> list[dict]:
    tensors, meta = _read(path)
    outcomes = [dict(row) for row in meta["outcomes"]]
    for name, t in tensors.items():
        index, kind, *rest = name.split("/", 2)
        outcome = outcomes[int(index)]
        if kind == "correct":
            outcome["correct"] = t.numpy().tobytes()
        else:
            outcome.setdefault(kind, {})[rest[0]] = t
    return outcomes


# -- the scheduler -----------------------------------------------------------------------------

def _scheduler(*args: str) -> str:
    """A SLURM command's output; its own message, in one line, when it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise PlatoError(f"the slurm executor needs SLURM's commands ({args[0]} is not on "
                         "this machine's PATH): run plato sweep on a SLURM login node") from None
    except subprocess.TimeoutExpired:
        raise PlatoError(f"SLURM did not answer `{' '.join(args)}` within 60 s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise PlatoError(f"SLURM: {message[-1] if message else f'{args[0]} failed'}")
    return done.stdout


def active_jobs(job_ids: list[str]) -> dict[str, str]:
    """job id -> state (PENDING, RUNNING, ...) of those still queued or running."""
    import getpass

    if not job_ids:
        return {}
    # (all of this user's, not `-j IDS`: squeue refuses ids it has forgotten)
    out = _scheduler("squeue", "-h", "-r", "-o", "%i %T", "-u", getpass.getuser())
    states = dict(line.split()[:2] for line in out.splitlines() if line.strip())
    return {j: states[j] for j in job_ids if j in states}


def check_shared(run_dir: Path, partition: str | None) -> None:
    """Refuse a run folder the compute nodes cannot see: a node-local path on a cluster of
    more than one node."""
    where = str(run_dir.resolve())
    if not any(where == p or where.startswith(p + "/") for p in NODE_LOCAL):
        return
    args = ["sinfo", "-h", "-o", "%D"] + (["-p", partition] if partition else [])
    nodes = sum(int(n) for n in _scheduler(*args).split() if n.isdigit())
    if nodes > 1:
        raise PlatoError(f"the run folder {run_dir} is on a node-local file system ({where}) "
                         f"and the cluster has {nodes} nodes: put it on a file system the "
                         "compute nodes share (--out)")


class _Said:
    text = ""


@contextlib.contextmanager
def _stderr_kept(path: Path):
    """What the process (and its children: sbatch) write to stderr, kept in `path` rather
    than shown: a refusal becomes one line of ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    said, saved = _Said(), os.dup(2)
    sys.stderr.flush()
    with open(path, "w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.text = sink.read().decode(errors="replace")


class SlurmExecutor:
    name = "slurm"

    def __init__(self, run_dir: Path, options: SlurmOptions | None = None,
                 progress: bool = True) -> None:
        self.folder = Path(run_dir) / "slurm"
        self.options = options or SlurmOptions()
        self.progress = progress

    # state: which group each submitted task holds
    def _state(self) -> dict[str, dict]:
        path = self.folder / "submitted.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_state(self, state: dict[str, dict]) -> None:
        write_file(self.folder / "submitted.json", json.dumps(state, indent=1))

    def merge(self, by_key: dict[str, Job], on_outcome) -> set[str]:
        """Record every result file's outcomes whose cells are still to do, and delete the
        file; a file none of whose cells this run asks for is left to the run that does (the
        same run folder's other spec: the autoencoder twins of `interpret: ood`). Returns the
        groups merged."""
        merged = set()
        for path in sorted((self.folder / "results").glob("*.safetensors")):
            try:
                outcomes = read_results(path)
            except Exception:  # (a file half-visible on a slow shared file system)
                continue
            if not any(o["key"] in by_key for o in outcomes):
                continue
            for outcome in outcomes:
                job = by_key.pop(outcome["key"], None)
                if job is not None:
                    on_outcome(job, outcome)
            path.unlink()
            merged.add(path.stem)
        return merged

    def run(self, jobs: list[Job], nets: dict[tuple[str, str], Network], dataset: Dataset,
            settings: CellSettings, on_outcome) -> None:
        try:
            import submitit  # noqa: F401  (used in _submit: refused here, before any work)
        except ImportError:
            raise PlatoError("the slurm executor needs submitit: pip install "
                             "'plato-stitch[slurm]'") from None
        if shutil.which("sbatch") is None:
            raise PlatoError("the slurm executor needs SLURM's commands (sbatch is not on this "
                             "machine's PATH): run plato sweep on a SLURM login node")
        by_key = {j.key: j for j in jobs}
        self.merge(by_key, on_outcome)  # what finished while no driver was here
        groups = {group_id(g): g for g in group_jobs(list(by_key.values()), settings.group_size)}
        state = self._state()  # (every spec's tasks in this run folder: kept whole)
        running = active_jobs([state[g]["job"] for g in groups if g in state])
        held = {g for g in groups if g in state and state[g]["job"] in running}
        new = [gid for gid in groups if gid not in held]
        if new:
            self._submit({gid: groups[gid] for gid in new}, nets, dataset, settings, state)
        self._wait(groups, state, by_key, on_outcome)

    def _submit(self, groups: dict[str, list[Job]], nets: dict[tuple[str, str], Network],
                dataset: Dataset, settings: CellSettings, state: dict[str, dict]) -> None:
        """One job array of these groups; each task's id goes into `state` (and its file)."""
        import submitit

        check_shared(self.folder.parent, self.options.partition)
        write_inputs(self.folder, nets, dataset)
        settings = replace(settings, threads=settings.threads or self.options.cpus_per_job)
        if self.options.gpus_per_job:
            settings = replace(settings, config=replace(settings.config, device="cuda"))
        executor = submitit.AutoExecutor(folder=self.folder / "logs", cluster="slurm")
        first = [group[0] for group in groups.values()]
        executor.update_parameters(**self.options.parameters(f"plato-{first[0].spec}"))
        n = len(groups)
        try:
            with _stderr_kept(self.folder / "logs" / "sbatch.err") as said:
                submitted = executor.map_array(
                    run_task, [str(self.folder)] * n, list(groups.values()),
                    [nets[(j.sender, j.sender_role)].identity for j in first],
                    [nets[(j.receiver, j.receiver_role)].identity for j in first],
                    [dataset.fingerprint()] * n, [settings] * n)
        except Exception as e:  # sbatch refused: its own message, one line
            lines = [ln.strip() for ln in (said.text + "\n" + str(e)).splitlines()
                     if ln.strip()]
            reason = next((ln for ln in lines if "sbatch: error" in ln),
                          lines[-1] if lines else type(e).__name__)
            raise PlatoError(f"SLURM refused the submission: {reason}") from None
        state.update({gid: {"job": job.job_id, "submitted": time.time(),
                            "log": str(job.paths.stdout)}
                      for gid, job in zip(groups, submitted, strict=True)})
        self._save_state(state)

    def _wait(self, groups: dict[str, list[Job]], state: dict[str, dict],
              by_key: dict[str, Job], on_outcome) -> None:
        """Merge results as they come; a task gone from the queue without a result twice in
        a row (a slow shared file system may show a file late) fails its cells."""
        from tqdm import tqdm

        open_groups, missing, failed = set(groups), set(), 0
        bar = tqdm(total=len(groups), desc="slurm tasks", unit="task", file=sys.stderr,
                   leave=False, dynamic_ncols=True, disable=not self.progress)
        try:
            while open_groups:
                running = active_jobs([state[g]["job"] for g in open_groups])
                done = self.merge(by_key, on_outcome) & open_groups
                for gid in list(open_groups):
                    if not any(j.key in by_key for j in groups[gid]):
                        done.add(gid)  # (its outcomes came in another file)
                open_groups -= done
                bar.update(len(done))
                gone = {g for g in open_groups if state[g]["job"] not in running}
                for gid in gone & missing:
                    self._failed(groups[gid], state[gid], by_key, on_outcome)
                    open_groups.discard(gid)
                    failed += 1
                    bar.update(1)
                missing = gone - missing
                queued = sum(1 for s in running.values() if s == "PENDING")
                bar.set_postfix(queued=queued, running=len(running) - queued,
                                done=bar.n - failed, failed=failed, refresh=False)
                if open_groups:
                    time.sleep(POLL_SECONDS)
        finally:
            bar.close()

    @staticmethod
    def _failed(group: list[Job], task: dict, by_key: dict[str, Job], on_outcome) -> None:
        reason = (f"slurm task {task['job']} ended without a result (cancelled, preempted, "
                  f"out of time or memory): see {task.get('log')}; plato sweep "
                  "--retry-failed submits it again")
        for job in group:
            if by_key.pop(job.key, None) is not None:
                on_outcome(job, {"key": job.key, "started": task["submitted"],
                                 "status": "failed", "reason": reason})


def task_status(run_dir: Path) -> dict:
    """The SLURM tasks of a run folder as the scheduler and the folder see them: queued,
    running, finished (a result file not merged yet: the next `plato sweep` merges it),
    merged, and ended without a result; with a rough time left from the rate so far."""
    folder = Path(run_dir) / "slurm"
    path = folder / "submitted.json"
    if not path.exists():
        raise PlatoError(f"{run_dir} has no SLURM tasks (no {path}): run plato sweep "
                         "--executor slurm --out RUN first")
    state = json.loads(path.read_text())
    active = active_jobs([s["job"] for s in state.values()])
    waiting = {p.stem for p in (folder / "results").glob("*.safetensors")}
    counts = {"queued": 0, "running": 0, "finished": 0, "merged or ended": 0}
    for gid, task in state.items():
        if task["job"] in active:
            counts["queued" if active[task["job"]] == "PENDING" else "running"] += 1
        elif gid in waiting:
            counts["finished"] += 1
        else:
            counts["merged or ended"] += 1
    left = counts["queued"] + counts["running"]
    out_of_queue = len(state) - left
    started = min((t["submitted"] for t in state.values()), default=time.time())
    elapsed = time.time() - started
    eta = elapsed / out_of_queue * left if out_of_queue and left else (0.0 if not left
                                                                          else None)
    return {"tasks": len(state), **counts, "seconds_left": eta}
