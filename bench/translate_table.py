"""What a training-free table costs against a fitted one (issue 34): one sender -> receiver
table over every block point, fitted by the converging default (lstsq+task) and translated
(objective translate, linear and orthogonal), in the same run on the same machine.

    python bench/translate_table.py [--run runs/reference-cifar10-cpu] [--anchors 1024]

Uses the reference study's cached networks (resnet-1111 -> resnet-1111-seed2, bn-conv1x1-bn)
and its data: the CIFAR-10 JPEG training split's seeded 10,000-image subset, 2,000 test images.
Prints one JSON line per cell and one per table (seconds, mean accuracy, mean distance from the
receiver's distribution).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import machine, reference_pair
from plato.models import cut_points
from plato.stitch import StitchConfig
from plato.stitch.run import stitch_grid


def table(sender, receiver, pairs, data, config, label: str) -> dict:
    start = time.perf_counter()
    outcomes = stitch_grid(sender, receiver, pairs, data, stitch="bn-conv1x1-bn",
                           config=config, names=("resnet-1111", "resnet-1111-seed2"))
    seconds = time.perf_counter() - start
    done = [r for r, _ in outcomes if not isinstance(r, Exception)]
    for r in done:
        print(json.dumps({"table": label, "from": r.sender_point, "to": r.receiver_point,
                          "accuracy": round(r.stitched_accuracy, 4),
                          "receiver_distance": round(r.receiver_distance, 3),
                          "steps": r.steps, "stop_reason": r.stop_reason}), flush=True)
    return {"table": label, "cells": len(done), "seconds": round(seconds, 1),
            "mean_accuracy": round(sum(r.stitched_accuracy for r in done) / len(done), 4),
            "mean_receiver_distance": round(sum(r.receiver_distance for r in done)
                                            / len(done), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=Path("runs/reference-cifar10-cpu"))
    parser.add_argument("--anchors", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sender, receiver, data = reference_pair(args.run)
    points = [p.name for p in cut_points(sender.model)]
    pairs = [(a, b) for a in points for b in points]
    summaries = []
    for translator in ("orthogonal", "linear"):
        config = StitchConfig.from_user({"objective": "translate", "translator": translator,
                                         "anchors": args.anchors, "device": args.device})
        summaries.append(table(sender, receiver, pairs, data, config,
                               f"translate ({translator}, {args.anchors} anchors)"))
    summaries.append(table(sender, receiver, pairs, data,
                           StitchConfig.converging(device=args.device),
                           "fitted (converging default, lstsq+task)"))
    for s in summaries:
        print(json.dumps({**s, "machine": machine()}), flush=True)


if __name__ == "__main__":
    main()
