"""Peak memory of one stitch grid as the dataset grows (issue 6).

    python bench/grid_memory.py --train 2000   # then 10000: one process per size
    python bench/grid_memory.py --train 10000 --cache disk   # the activation cache's tier

Runs `StitchConfig.fast()` on every block cell of `resnet-1111` -> `resnet-1112` (the
networks `grid_vs_naive.py` trained and cached) and prints the process's peak RSS before and
after the grid. The data (decoded uint8, resident) grows with the images; the grid's own
state (one batch of activations per cut point, each cell's stitch and optimiser, d x d
closed-form statistics, 1,024-example CKA Grams) does not.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from common import cifar10, grid_networks
from plato.models import cut_graph
from plato.stitch import StitchConfig, stitch_grid
from plato.stitch.config import CACHE_TIERS


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    p.add_argument("--cache", choices=CACHE_TIERS, default="auto",
                   help="StitchConfig.activation_cache")
    args = p.parse_args()
    ds = cifar10(train=args.train, test=args.test)
    a, b = (c.model for c in grid_networks(args.out))
    before = peak_mib()
    start = time.perf_counter()
    cells = [(sp.name, rp.name) for sp in cut_graph(a).points() for rp in cut_graph(b).points()]
    config = StitchConfig.fast(device="cpu", activation_cache=args.cache)
    stitch_grid(a, b, cells, ds, config=config, accuracies=(0.7, 0.7))
    print(json.dumps({"train_images": args.train, "cells": len(cells), "cache": args.cache,
                      "peak_rss_mib_before_grid": round(before),
                      "peak_rss_mib": round(peak_mib()),
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
