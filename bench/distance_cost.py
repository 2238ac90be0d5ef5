"""What the distance from the receiver's distribution adds to a grid's test pass.

Every stitch result carries `receiver_distance` (plato.stitch.distance): the receiver's
statistics at each of its points from 2,048 training images (one pass, streamed sums), then,
in the test pass, each cell's stitched activations whitened against them. This script times
both parts for one sweep group of a CIFAR-10 network into itself at every block point (the
cells' own fits, hundreds of SGD steps each, are what they are compared with).

    python bench/distance_cost.py --checkpoint runs/interpret-cifar10-cpu/networks/resnet-1111.ckpt
"""

from __future__ import annotations

import argparse
import time

import torch

from common import cifar10, log, machine
from plato.checkpoint import load_checkpoint
from plato.data.loader import make_loader
from plato.models import cut_graph
from plato.stitch import Activations
from plato.stitch.distance import DistanceSums, receiver_gaussians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ds = cifar10(train=10000, test=2000)
    net = load_checkpoint(args.checkpoint).model.eval()
    graph = cut_graph(net)
    points = graph.points()
    names = [p.name for p in points]
    receivers = Activations.of(graph, points)
    for _ in range(args.repeats):
        start = time.perf_counter()
        gaussians = receiver_gaussians(receivers, ds, names)
        fit = time.perf_counter() - start
        # the test pass's extra work: each point's activations whitened once (a cell's cost:
        # its receiver point's share)
        passes, whiten = 0.0, 0.0
        for x, _ in make_loader(ds, "test", 1024):
            start = time.perf_counter()
            with torch.no_grad():
                acts = receivers(x)
            passes += time.perf_counter() - start
            start = time.perf_counter()
            for name in names:
                DistanceSums().add(gaussians[name], acts[name])
            whiten += time.perf_counter() - start
        log({"points": names, "statistics_s": round(fit, 2),
             "test_whitening_all_points_s": round(whiten, 2),
             "test_forward_all_points_s": round(passes, 2), **machine()})


if __name__ == "__main__":
    main()
