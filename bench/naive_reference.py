"""The naive loop trained longer on a few cells: is the 3-epoch reference converged?

    python bench/naive_reference.py --epochs 10 --cell resnet-1111:stem:resnet-1112:stem ...

Uses the networks `bench/grid_vs_naive.py` trained and cached (same --train/--test subset and
--train-epochs) and its naive loop (`naive_cell`); prints one JSON line per cell.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import cifar10, grid_networks, log, naive_cell

# The eight cells grid_vs_naive.py samples (every ninth stitchable cell of the grid).
DEFAULT_CELLS = ["resnet-1111:stem:resnet-1112:stem",
                 "resnet-1111:layer1.0:resnet-1112:layer2.0",
                 "resnet-1111:layer2.0:resnet-1112:layer4.0",
                 "resnet-1111:layer3.0:resnet-1112:pool",
                 "resnet-1112:stem:resnet-1111:stem",
                 "resnet-1112:layer1.0:resnet-1111:layer3.0",
                 "resnet-1112:layer3.0:resnet-1111:stem",
                 "resnet-1112:layer4.0:resnet-1111:layer3.0"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--cell", action="append", help="SENDER:POINT:RECEIVER:POINT")
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--train-epochs", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--lr", type=float, default=1e-3, help="the naive loop's Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="the stitch's init and data order")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    args = p.parse_args()
    args.naive_epochs, args.naive_lr, args.naive_seed = args.epochs, args.lr, args.seed
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = cifar10(train=args.train, test=args.test)
    nets = {c.name: c.model for c in grid_networks(args.out, args.train_epochs, args.train,
                                                   args.device)}
    for cell in args.cell or DEFAULT_CELLS:
        sender, sp, receiver, rp = cell.split(":")
        start = time.perf_counter()
        acc = naive_cell(nets[sender], nets[receiver], sp, rp, ds, args)
        log({"cell": cell, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
             "naive": acc, "seconds": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
