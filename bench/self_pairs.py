"""Self-pairs of the reference study: each network stitched into itself at the same point, at
the converging default, with the task loss's label smoothing as the receiver was trained
(`receiver`, the default) and without (0, plain cross-entropy, the default before).

    python bench/self_pairs.py [--network resnet-1112] [--points layer3.0,layer4.0,pool]
                               [--seeds 0,1] [--smoothing receiver --smoothing 0]

Reads the reference study's spec and its trained networks (`plato sweep
examples/reference_cifar10_cpu/spec.yaml` trains them into runs/reference-cifar10-cpu/networks)
and prints one JSON line per cell: stitched accuracy against the network's own on the study's
2,000 test images, the steps taken, and the held-out curve.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO, log, machine
from plato.checkpoint import load_checkpoint
from plato.stitch import StitchConfig, stitch_grid
from plato.sweep.run import sweep_dataset
from plato.sweep.spec import load_spec

SPEC = REPO / "examples" / "reference_cifar10_cpu" / "spec.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--network", default="resnet-1112")
    p.add_argument("--points", default="layer3.0,layer4.0,pool")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--smoothing", action="append", default=[],
                   help="label_smoothing: receiver or a number (repeatable; default both)")
    p.add_argument("--networks", type=Path, default=Path("runs/reference-cifar10-cpu/networks"))
    args = p.parse_args()
    dataset = sweep_dataset(load_spec(SPEC))
    found = sorted(args.networks.glob(f"{args.network}-*.ckpt"))
    if not found:
        raise SystemExit(f"no {args.network} checkpoint in {args.networks}: run the study's "
                         "sweep first")
    net = load_checkpoint(found[0])
    points = args.points.split(",")
    log({"network": args.network, "recipe": net.meta.get("recipe"), **machine()})
    for smoothing in args.smoothing or ["receiver", "0"]:
        value = smoothing if smoothing == "receiver" else float(smoothing)
        for seed in (int(s) for s in args.seeds.split(",")):
            config = StitchConfig.converging(label_smoothing=value, seed=seed, device="cpu")
            start = time.perf_counter()
            grid = stitch_grid(net, net, [(q, q) for q in points], dataset, config=config)
            seconds = time.perf_counter() - start
            for result, _ in grid:
                log({"smoothing": smoothing, "seed": seed, "point": result.sender_point,
                     "stitched": result.stitched_accuracy, "network": result.receiver_accuracy,
                     "gap_points": round(100 * (result.receiver_accuracy
                                                - result.stitched_accuracy), 2),
                     "steps": result.steps, "curve": result.holdout_curve,
                     "grid_seconds": round(seconds, 1)})


if __name__ == "__main__":
    main()
