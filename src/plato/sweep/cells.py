"""Running a group of cells: one `stitch_grid` over the cells that share a sender, receiver,
control and seed, each cell's outcome (done, unstitchable, failed with its reason) for the
store. Runs in the driver (local) or on a worker (Ray)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace

import numpy as np
import torch

from plato.data.datasets import Dataset
from plato.errors import PlatoError, TrainingError
from plato.interpret.config import SaliencyConfig
from plato.interpret.saliency import explain_stitch
from plato.stitch import NotStitchable, StitchConfig, stitch_grid
from plato.sweep.jobs import Job
from plato.sweep.networks import Network
from plato.sweep.spec import SweepSpec


@dataclass
class CellSettings:
    """What a cell needs from the spec and the run, small enough to ship to a worker."""

    config: StitchConfig  # the spec's, on the run's device; each group sets its seed
    stitch: str  # stitch type
    resize: str
    granularity: str  # of the spec's points (a name means one point at either granularity)
    keep_stitch: bool
    threads: int | None = None  # CPU threads per group (None: torch's); sums depend on it
    group_size: int = 64  # cells sharing one pass of the frozen networks (lost together)
    saliency: SaliencyConfig | None = None  # explain each cell (plato.interpret.saliency)

    @classmethod
    def from_spec(cls, spec: SweepSpec, device: torch.device, threads: int | None = None,
                  group_size: int = 64) -> CellSettings:
        return cls(replace(spec.stitch_config, device=str(device)), spec.stitch, spec.resize,
                   spec.granularity, spec.keep_stitches, threads, group_size,
                   spec.interpret.saliency)


def run_cells(jobs: list[Job], sender: Network, receiver: Network, dataset: Dataset,
              settings: CellSettings) -> list[dict]:
    """Run a group of cells that share sender, receiver and seed, with shared passes.

    Never raises for the cells' own failures: each outcome says what happened to its cell.
    """
    started = time.time()
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        grid = stitch_grid(
            sender.model, receiver.model, [(j.sender_point, j.receiver_point) for j in jobs],
            dataset, stitch=settings.stitch, config=replace(settings.config, seed=jobs[0].seed),
            granularity=settings.granularity, resize=settings.resize,
            accuracies=(sender.accuracy, receiver.accuracy),
            graphs=(sender.graph, receiver.graph), names=(jobs[0].sender, jobs[0].receiver))
        outcomes = []
        for job, (result, model) in zip(jobs, grid, strict=True):
            outcome = {"key": job.key, "started": started}
            if isinstance(result, Exception):
                outcome.update(_failure(result))
            else:
                outcome.update(status="done", result=result.to_dict(),
                               correct=np.packbits(result.correct).tobytes())
                if settings.keep_stitch:
                    outcome["stitch_state"] = {k: v.detach().cpu().contiguous()
                                               for k, v in model.stitch.state_dict().items()}
                if settings.saliency is not None:
                    try:
                        _explain(outcome, model, dataset, settings)
                    except Exception as e:  # this cell only; rerun with --retry-failed
                        outcome = {"key": job.key, "started": started,
                                   **_failure(e, "saliency: ")}
            outcomes.append(outcome)
        return outcomes
    except Exception as e:  # a failure of the shared part fails every cell of the group
        return [{"key": j.key, "started": started, **_failure(e)} for j in jobs]
    finally:
        torch.set_num_threads(threads)


def _explain(outcome: dict, model, dataset: Dataset, settings: CellSettings) -> None:
    """A done cell's saliency: the headline numbers as metrics, every method's in the result,
    the maps of the shown images for the driver to keep (float16)."""
    explained = explain_stitch(model, dataset, settings.saliency, settings.config.device,
                               strict=False)
    outcome["result"].update(explained.headline(), saliency=explained.to_dict())
    outcome["saliency_maps"] = {f"{method}/{role}": maps.contiguous()
                                for (method, role), maps in explained.shown.items()}


def _failure(e: BaseException, where: str = "") -> dict:
    found = _what_failed(e)
    return {**found, "reason": where + found["reason"]}


def _what_failed(e: BaseException) -> dict:
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
