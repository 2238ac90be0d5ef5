"""Stacked groups against single cells in the CPU threads (issue 6): A/B on one grid.

    python bench/cpu_stacking.py [--train 10000 --rounds 2]

`StitchConfig.fast()` on every block cell of `resnet-1111` -> `resnet-1112` and back (the
networks `grid_vs_naive.py` trained and cached), each ordered pair run `--rounds` times per
mode, the modes interleaved: "stacked" (the default: the cells sharing a receiver suffix run it
once on their stacked outputs, a group per thread) and "one-by-one" (each cell its own suffix
call, a cell per thread). Prints, per run, the task phase's and the whole grid's seconds and
the mean stitched accuracy of the pair's cells.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import plato.stitch.fit as fit_module
from common import cifar10, grid_networks
from plato.models import cut_graph
from plato.stitch import StitchConfig, stitch_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    args = p.parse_args()
    ds = cifar10(train=args.train, test=args.test)
    a, b = (c.model for c in grid_networks(args.out))
    task_seconds = {}
    fit_sgd = fit_module.fit_sgd

    def timed(*fargs, **kwargs):
        start = time.perf_counter()
        try:
            return fit_sgd(*fargs, **kwargs)
        finally:
            task_seconds["last"] = time.perf_counter() - start

    fit_module.fit_sgd = timed  # the task phase's time, as fit_stitches calls it
    order = ["one-by-one", "stacked"]
    for r in range(args.rounds):
        for pair in ((a, b), (b, a)):
            for mode in order if r % 2 == 0 else order[::-1]:
                s, t = pair
                cells = [(sp.name, rp.name) for sp in cut_graph(s).points()
                         for rp in cut_graph(t).points()]
                start = time.perf_counter()
                config = StitchConfig.fast(device="cpu", stacking=mode == "stacked")
                out = stitch_grid(s, t, cells, ds, config=config, accuracies=(0.7, 0.7))
                grid = time.perf_counter() - start
                accuracy = [res.stitched_accuracy for res, _ in out
                            if hasattr(res, "stitched_accuracy")]
                print(json.dumps({"mode": mode, "sender": "resnet-1111" if s is a else
                                  "resnet-1112", "task_seconds": round(task_seconds["last"], 1),
                                  "grid_seconds": round(grid, 1), "cells": len(accuracy),
                                  "mean_accuracy": round(sum(accuracy) / len(accuracy), 5)}),
                      flush=True)


if __name__ == "__main__":
    main()
