"""A small grid on digits, timed: the same script against two versions of Plato (an A/B of a
change that should not move speed or answers).

    python bench/digits_grid.py                           # the checkout's plato
    git worktree add /tmp/before COMMIT
    PYTHONPATH=/tmp/before/src python bench/digits_grid.py   # the one before

Two `resnet` networks of width 16 (3 training epochs on digits), every block pair of one
into the other (42 cells), with `StitchConfig.fast(epochs=6)` and with `match` for 4 epochs.
Prints one JSON line: seconds per grid and a checksum of the stitched accuracies (equal
answers give equal checksums). Uses only names every version since issue 6 has, so it does not
import bench/common.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import plato
from plato.models import cut_graph
from plato.stitch import StitchConfig, stitch_grid
from plato.train import Recipe, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = plato.load_dataset("digits")
    nets = []
    for name, seed in (("resnet-1111", 0), ("resnet-1112", 1)):
        torch.manual_seed(seed)
        net = plato.create_model(name, num_classes=10, input_shape=ds.input_shape, width=16)
        train(net, ds, Recipe(epochs=3, batch_size=64, seed=seed, device="cpu"), progress=False)
        nets.append(net.eval())
    a, b = nets
    cells = [(sp.name, rp.name) for sp in cut_graph(a).points() for rp in cut_graph(b).points()]
    row = {"plato": plato.__file__, "cells": len(cells), "threads": args.threads,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    for name, config in (("fast_6_epochs", StitchConfig.fast(device="cpu", epochs=6)),
                         ("match_4_epochs", StitchConfig(objective="match", epochs=4,
                                                         device="cpu"))):
        start = time.perf_counter()
        grid = stitch_grid(a, b, cells, ds, config=config, accuracies=(0.9, 0.9))
        row[f"{name}_s"] = round(time.perf_counter() - start, 2)
        row[f"{name}_checksum"] = round(sum(r.stitched_accuracy for r, _ in grid
                                            if not isinstance(r, Exception)), 6)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
