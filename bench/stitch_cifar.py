"""Issue-3 target: same-point stitches between two resnet-1111 (width 16) trained on CIFAR-10.

    python bench/stitch_cifar.py --epochs 15 --stitch-epochs 2 [--objective lstsq+task]

Trains two networks with different seeds on the CIFAR-10 JPEG copy (or reuses the checkpoints
in --out), prints each one's accuracy per epoch with wall time, then stitches the sender into
the receiver at every block boundary with a `bn-conv1x1-bn` task stitch and prints the table:
stitched accuracy against the receiver's (Bansal et al. report at most ~3 points of penalty).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import plato
from common import cifar10, log, machine
from plato.checkpoint import load_checkpoint
from plato.stitch import StitchConfig, stitch_networks
from plato.train import Recipe, evaluate, train_and_save

# ---- hyper-parameters -----------------------------------------------------------------------
NET = dict(name="resnet-1111", width=16)
RECIPE = dict(batch_size=256, lr=0.2, label_smoothing=0.1)  # SGD-Nesterov, warmup + cosine
STITCH = dict(batch_size=128, lr=1e-3)  # Adam, cosine


def network(ds, seed: int, epochs: int, out: Path):
    path = out / f"resnet-1111-w16-seed{seed}-e{epochs}.ckpt"
    if not path.exists():
        recipe = Recipe(epochs=epochs, seed=seed, device="cpu", **RECIPE)
        _, result = train_and_save(NET["name"], ds, recipe, path, progress=sys.stderr.isatty(),
                                   width=NET["width"])
        elapsed = 0.0
        for h in result.history:
            elapsed += h["seconds"]
            log({"net": seed, "epoch": h["epoch"],
                 "test_accuracy": round(h["test_accuracy"], 4), "wall_s": round(elapsed, 1)})
    return load_checkpoint(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--stitch-epochs", type=int, default=2)
    parser.add_argument("--objective", default="task", help="task, lstsq, lstsq+task, match")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/cifar"))
    args = parser.parse_args()
    ds = cifar10()
    sender = network(ds, 0, args.epochs, args.out)
    receiver = network(ds, 1, args.epochs, args.out)
    accs = (evaluate(sender.model, ds)["accuracy"], evaluate(receiver.model, ds)["accuracy"])
    log({"sender_accuracy": accs[0], "receiver_accuracy": accs[1], **machine()})
    rows = []
    for point in plato.cut_points(sender.model):
        start = time.perf_counter()
        result, _ = stitch_networks(
            sender, receiver, point.name, point.name, ds, stitch="bn-conv1x1-bn",
            config=StitchConfig(objective=args.objective, epochs=args.stitch_epochs, device="cpu",
                                **STITCH),
            accuracies=accs, progress=sys.stderr.isatty())
        row = {"point": point.name, "stitched_accuracy": round(result.stitched_accuracy, 4),
               "receiver_accuracy": round(accs[1], 4),
               "penalty_points": round(100 * (accs[1] - result.stitched_accuracy), 2),
               "stitch_parameters": result.stitch_parameters,
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        log(row)
    print("\n| point | stitched | receiver | penalty (pts) | stitch params | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['point']} | {r['stitched_accuracy']:.4f} | {r['receiver_accuracy']:.4f} | "
              f"{r['penalty_points']:.2f} | {r['stitch_parameters']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
