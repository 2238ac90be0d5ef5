"""Issue-16 targets on digits: same-point stitches of `resnet-1111` (width 16, seed 0) into
its seed-1 twin at every block point, and the span replacement of `plato replace`, under a
fixed budget and under the converging one.

    python bench/digits_targets.py [--config '{"lr": 0.03}' ...]

Each --config is a user's StitchConfig settings as JSON, over the default they mean
(`StitchConfig.from_user`; `"fast": true` for the fast setting); repeatable; default: the
default (converging), the fast setting, and the fixed 3-epoch default of earlier versions.
Prints JSON lines, then a table per configuration: stitched accuracy against the receiver's
at each point, steps, converged, seconds; and `replace --from 1 --to 2`: `match`'s activation
MSE against `task`'s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import log, machine, trained
from plato.data import load_dataset
from plato.models import cut_points
from plato.stitch import StitchConfig, replace_span, stitch_grid
from plato.train import Recipe, evaluate

DEFAULT_CONFIGS = ['{}', '{"fast": true}', '{"epochs": 3}']


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", action="append", default=[])
    p.add_argument("--out", type=Path, default=Path("runs/bench/digits"))
    args = p.parse_args()
    ds = load_dataset("digits")
    sender, receiver = (trained("resnet-1111", ds, Recipe(epochs=15, batch_size=64, seed=seed,
                                                          device="cpu"),
                                args.out / f"resnet-1111-w16-seed{seed}.ckpt", width=16)
                        for seed in (0, 1))
    accs = tuple(evaluate(c.model, ds, device="cpu")["accuracy"] for c in (sender, receiver))
    log({"sender_accuracy": accs[0], "receiver_accuracy": accs[1], **machine()})
    points = [p.name for p in cut_points(sender.model)]
    for text in args.config or DEFAULT_CONFIGS:
        fields = json.loads(text)
        fast = fields.pop("fast", False)
        config = StitchConfig.from_user({**fields, "device": "cpu"}, fast=fast)
        start = time.perf_counter()
        grid = stitch_grid(sender, receiver, [(q, q) for q in points], ds, config=config,
                           accuracies=accs)
        seconds = time.perf_counter() - start
        rows = [{"point": r.sender_point, "stitched": round(r.stitched_accuracy, 4),
                 "gap_points": round(100 * (accs[1] - r.stitched_accuracy), 2),
                 "steps": r.steps, "converged": r.converged} for r, _ in grid]
        start = time.perf_counter()
        match, task = replace_span(sender, 1, 2, ds, config=config)
        log({"config": text, "grid_seconds": round(seconds, 1), "cells": rows,
             "worst_gap_points": max(r["gap_points"] for r in rows),
             "replace_seconds": round(time.perf_counter() - start, 1),
             "replace_match_mse": round(match.activation_mse, 4),
             "replace_task_mse": round(task.activation_mse, 4),
             "replace_mse_ratio": round(match.activation_mse / task.activation_mse, 3),
             "replace_accuracy": [round(match.stitched_accuracy, 4),
                                  round(task.stitched_accuracy, 4)]})


if __name__ == "__main__":
    main()
