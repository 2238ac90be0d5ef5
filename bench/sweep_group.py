"""Time one group of sweep cells (one sender/receiver pair and control) of a spec.

    python bench/sweep_group.py examples/plato4_cifar10_cpu.yaml [--group 0] [--profile]

Trains or loads the spec's networks exactly as `plato sweep` would (run folder --out), then
runs one group of cells with `run_cells` and prints its wall time and time per cell;
--profile prints the top of a cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

import torch

from plato.sweep.cells import CellSettings, run_cells
from plato.sweep.jobs import build_jobs, group_jobs
from plato.sweep.networks import prepare_networks
from plato.sweep.run import sweep_dataset
from plato.sweep.spec import load_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec", type=Path)
    p.add_argument("--group", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/NAME)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    spec = load_spec(args.spec)
    ds = sweep_dataset(spec)
    nets = prepare_networks(spec, ds, args.out or Path("runs") / spec.name,
                            torch.device("cpu"), progress=False)
    group = group_jobs(build_jobs(spec, nets, ds.fingerprint()), 64)[args.group]
    settings = CellSettings.from_spec(spec, torch.device("cpu"))
    sender = nets[(group[0].sender, group[0].sender_role)]
    receiver = nets[(group[0].receiver, group[0].receiver_role)]
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    outcomes = run_cells(group, sender, receiver, ds, settings)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    print(json.dumps({"sender": group[0].sender, "receiver": group[0].receiver,
                      "control": group[0].control, "cells": len(group), "seconds":
                      round(seconds, 1), "seconds_per_cell": round(seconds / len(group), 2),
                      "statuses": sorted({o["status"] for o in outcomes})}))
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
