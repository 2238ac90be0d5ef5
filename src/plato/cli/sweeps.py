"""Sweeps: run a spec, see where a run stands, check a store."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import AllSpecs, Json, MlflowUri, Quiet, SpecName, Store
from plato.cli.output import emit
from plato.errors import EXIT_FAILED_CELLS, PlatoError, printable
from plato.sweep.options import GROUP_SIZE, MAX_CELLS, SlurmOptions

SLURM = SlurmOptions()


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (YAML).")],
    out: Annotated[Path | None, typer.Option(
        help="Run folder (default runs/SPEC_NAME).")] = None,
    executor: Annotated[str, typer.Option(help="local, ray or slurm")] = "local",
    address: Annotated[str | None, typer.Option(
        help="Ray cluster address (default: start a local one).")] = None,
    gpus_per_job: Annotated[float, typer.Option(
        help="GPUs per Ray task (fractional: 0.25) or per SLURM task (whole).")] = 0.0,
    partition: Annotated[str | None, typer.Option(
        help="SLURM partition (default: the cluster's).")] = SLURM.partition,
    time_min: Annotated[int, typer.Option(
        min=1, help="SLURM: each task's time limit, minutes.")] = SLURM.time_min,
    cpus_per_job: Annotated[int, typer.Option(
        min=1, help="SLURM: CPUs per task (its threads).")] = SLURM.cpus_per_job,
    mem_gb: Annotated[float | None, typer.Option(
        help="SLURM: memory per task, GB.")] = SLURM.mem_gb,
    account: Annotated[str | None, typer.Option(
        help="SLURM account to charge.")] = SLURM.account,
    array_parallelism: Annotated[int, typer.Option(
        min=1, help="SLURM: array tasks running at once, at most.")] = SLURM.array_parallelism,
    sbatch: Annotated[list[str] | None, typer.Option(
        help="SLURM: another sbatch option, KEY=VALUE (repeatable: --sbatch qos=low).")] = None,
    setup: Annotated[list[str] | None, typer.Option(
        help="SLURM: a shell line each task runs first (repeatable: --setup 'module load "
        "cuda').")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Run failed cells again.")] = False,
    device: Annotated[str, typer.Option(
        help="auto, cpu, cuda, cuda:N (local executor).")] = "auto",
    threads: Annotated[int | None, typer.Option(
        help="CPU threads per cell (ray default: 1).")] = None,
    group_size: Annotated[int, typer.Option(
        min=1, help="Cells sharing one pass of the frozen networks (a Ray task; lost together "
        "on a crash).")] = GROUP_SIZE,
    wait: Annotated[bool, typer.Option(
        help="If another sweep is running in the run folder, wait for it to end (default: "
        "refuse).")] = False,
    max_cells: Annotated[int, typer.Option(
        help="Refuse a spec of more cells than this before any work.")] = MAX_CELLS,
    mlflow: MlflowUri = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Run every cell of a sweep spec; resumes where a previous run stopped."""
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec

    if mlflow:  # refused before any work, not after it
        from plato.report.tracker import mlflow_module

        mlflow_module()
    extra = {}
    for item in sbatch or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PlatoError(f"--sbatch takes KEY=VALUE (an sbatch option without its dashes, "
                             f"e.g. qos=low), got '{item}'")
        extra[key.strip().lstrip("-")] = value
    if gpus_per_job and executor == "slurm" and gpus_per_job != int(gpus_per_job):
        raise PlatoError("--gpus-per-job must be a whole number for SLURM tasks")
    slurm = SlurmOptions(partition, time_min, cpus_per_job, int(gpus_per_job), mem_gb, account,
                         array_parallelism, extra, list(setup or []))
    summary = run_sweep(load_spec(spec), out, executor=executor, address=address,
                        gpus_per_job=gpus_per_job, retry_failed=retry_failed, device=device,
                        threads=threads, group_size=group_size, progress=not quiet,
                        wait=wait, max_cells=max_cells, slurm=slurm)
    retry = (f"plato sweep {shlex.quote(str(spec))} --out "
             f"{shlex.quote(str(Path(summary.store).parent))} --retry-failed")
    failed = summary.failed_stored
    runs = None
    if mlflow:
        from plato.report.tracker import log_to_mlflow

        runs = log_to_mlflow(summary.store, mlflow, spec=summary.spec)
    emit({**summary.to_dict(), "exit_code": EXIT_FAILED_CELLS if failed else 0,
          "retry": retry if failed else None, **({"mlflow_runs": runs} if runs else {})},
         as_json,
         f"sweep {summary.spec}: {summary.cells} cells, {summary.skipped} already stored, "
         f"{summary.done} done, {summary.unstitchable} not stitchable, {summary.failed} "
         f"failed, in {summary.seconds:.1f} s\nstore: {summary.store}"
         + (f"\nmlflow: run {runs[0]} at {printable(mlflow)}" if runs else ""))
    if failed:
        print(f"plato: {failed} cell(s) of the sweep failed (each one's reason "
              f"is stored with it, column `reason` of the store's cells); run them again "
              f"with: {printable(retry)}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED_CELLS)


@app.command()
def status(
    run: Annotated[Path, typer.Argument(help="A run folder (plato sweep --out).")],
    as_json: Json = False,
) -> None:
    """Where a sweep stands: its cells in the store and, for --executor slurm, its tasks
    (queued, running, finished and waiting to be merged) with a rough time left."""
    from plato.sweep.run import run_status

    obj = run_status(run)
    counts = obj["cells"]
    text = ["cells: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none")]
    if "slurm" in obj:
        tasks = obj["slurm"]
        left = tasks["seconds_left"]
        text.append(f"slurm tasks: {tasks['tasks']} submitted; {tasks['queued']} queued, "
                    f"{tasks['running']} running, {tasks['finished']} finished and not yet "
                    f"merged (plato sweep merges them), {tasks['merged or ended']} merged or "
                    "ended" + (f"; about {left / 60:.0f} min left (rough)" if left else ""))
    emit(obj, as_json, "\n".join(text))


@app.command()
def check(
    store: Store,
    spec: SpecName = None,
    all_specs: AllSpecs = False,
    as_json: Json = False,
) -> None:
    """Sanity checks of a store: self-pairs, controls, layer identification, convergence.
    Exits 1 when a check fails."""
    from plato.sweep.checks import run_checks, verdict
    from plato.sweep.store import Store as ResultStore

    with ResultStore(store, create=False) as db:
        checks = run_checks(db, db.one_spec(spec, all_specs))
    failed = [c.name for c in checks if c.passed is False]
    mark = {True: "pass", False: "FAIL", None: "n/a "}
    emit({"checks": [c.to_dict() for c in checks], "failed": failed,
          "verdict": verdict(checks)}, as_json,
         "\n".join([verdict(checks)] + [f"{mark[c.passed]}  {c.name}: {c.detail}"
                                         for c in checks]))
    if failed:
        raise typer.Exit(1)
