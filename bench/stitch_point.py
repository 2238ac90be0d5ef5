"""One same-point stitch between the two CIFAR networks of bench/stitch_cifar.py, under
several objectives and budgets: separates optimisation from capacity at a cut point.

    python bench/stitch_point.py stem --epochs 2 6 --objectives task lstsq lstsq+task
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import cifar10, log
from plato.checkpoint import load_checkpoint
from plato.stitch import StitchConfig, stitch_networks
from plato.train import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("point")
    parser.add_argument("--epochs", type=int, nargs="+", default=[2])
    parser.add_argument("--objectives", nargs="+", default=["task"])
    parser.add_argument("--stitch", default="bn-conv1x1-bn")
    parser.add_argument("--nets", type=Path, default=Path("runs/bench/cifar"))
    args = parser.parse_args()
    ds = cifar10()
    sender = load_checkpoint(args.nets / "resnet-1111-w16-seed0-e15.ckpt")
    receiver = load_checkpoint(args.nets / "resnet-1111-w16-seed1-e15.ckpt")
    accs = (evaluate(sender.model, ds)["accuracy"], evaluate(receiver.model, ds)["accuracy"])
    for objective in args.objectives:
        for epochs in args.epochs if objective != "lstsq" else [0]:
            r, _ = stitch_networks(sender, receiver, args.point, args.point, ds,
                                   stitch=args.stitch, accuracies=accs,
                                   config=StitchConfig(objective=objective, epochs=epochs,
                                                       device="cpu"))
            log({"point": args.point, "stitch": args.stitch, "objective": objective,
                 "epochs": epochs, "stitched_accuracy": round(r.stitched_accuracy, 4),
                 "receiver_accuracy": round(accs[1], 4),
                 "activation_mse": round(r.activation_mse, 4), "seconds": round(r.seconds, 1)})


if __name__ == "__main__":
    main()
