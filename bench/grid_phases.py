"""Where a stitch grid's time goes, per configuration, on the CIFAR harness's one ordered pair
(`resnet-1111` -> `resnet-1112` width 16 of bench/grid_vs_naive.py, trained once and cached in
--out): the wall time of the closed form, of the SGD phase (and within it, of the looks at the
held-out loss), and of the test-split measurement; the SGD steps; every cell's accuracy; and
each configuration's distance from the first one given (the reference).

    python bench/grid_phases.py CONFIG [CONFIG ...]

Each CONFIG is StitchConfig fields as JSON; `"converging": true` starts from
`StitchConfig.converging()`, `"fast": true` from `StitchConfig.fast()`, else `StitchConfig()`.
Configurations run one after another in this one process (compare wall times within a run:
the machine's speed drifts by 10-15% between runs).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from common import cifar10, grid_networks, log, machine
from plato.models import cut_graph
from plato.stitch import StitchConfig, stitch_grid
from plato.stitch import fit as fit_module
from plato.stitch import run as run_module
from plato.stitch import sgd as sgd_module
from plato.train import evaluate

SECONDS: dict[str, float] = defaultdict(float)


def timed(owner, name: str, phase: str) -> None:
    """Add the wall time of every call of owner.name to SECONDS[phase]."""
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[phase] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def config_of(text: str) -> StitchConfig:
    fields = json.loads(text)
    base = (StitchConfig.fast if fields.pop("fast", False) else
            StitchConfig.converging if fields.pop("converging", False) else StitchConfig)
    return base(device="cpu", **fields)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("configs", nargs="+", help="StitchConfig fields as JSON (the first: the "
                                              "reference the others are compared with)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    args = p.parse_args()
    timed(fit_module, "fit_lstsq", "closed_form")
    timed(fit_module, "fit_sgd", "sgd")
    timed(sgd_module._Loop, "holdout_losses", "looks")
    timed(run_module, "measure_stitches", "measure")
    ds = cifar10(train=10000, test=2000)
    a, b = grid_networks(args.out, 15, 10000, "cpu")
    accuracies = tuple(evaluate(n.model, ds, device="cpu")["accuracy"] for n in (a, b))
    log({"networks": dict(zip((a.name, b.name), accuracies, strict=True)), **machine()})
    todo = [(sp.name, rp.name) for sp in cut_graph(a.model).points()
            for rp in cut_graph(b.model).points()]
    reference = None
    for text in args.configs:
        SECONDS.clear()
        start = time.perf_counter()
        grid = stitch_grid(a.model, b.model, todo, ds, config=config_of(text),
                           accuracies=accuracies)
        total = time.perf_counter() - start
        results = [r for r, _ in grid if not isinstance(r, Exception)]
        found = {f"{r.sender_point}>{r.receiver_point}": r.stitched_accuracy for r in results}
        row = {"config": text, "seconds": round(total, 1),
               **{phase: round(s, 1) for phase, s in SECONDS.items()},
               "mean_steps": round(sum(r.steps for r in results) / len(results), 1),
               "max_steps": max(r.steps for r in results),
               "converged": sum(bool(r.converged) for r in results), "cells": len(results)}
        if reference is None:
            reference = found
        else:
            dacc = [100 * (found[k] - reference[k]) for k in reference]
            row.update(mean_abs_dacc_pts=round(sum(map(abs, dacc)) / len(dacc), 2),
                       max_abs_dacc_pts=round(max(map(abs, dacc)), 2),
                       mean_signed_dacc_pts=round(sum(dacc) / len(dacc), 2))
        log({**row, "accuracy": found})


if __name__ == "__main__":
    main()
