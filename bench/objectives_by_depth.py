"""Which objective, at which depth (issue 34): the reference networks stitched at every depth
(the same block point on both sides, resnet-1111 -> resnet-1111-seed2, bn-conv1x1-bn) by each
objective under the converging rule, and translated; accuracy and the distance of the stitched
activations from the receiver's distribution, side by side.

    python bench/objectives_by_depth.py [--run runs/reference-cifar10-cpu]

Data as the reference study: 10,000 CIFAR-10 JPEG training images, 2,000 test images. One
JSON line per cell, then a Markdown table.
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

OBJECTIVES = ("task", "match", "final", "final+task", "lstsq+task", "translate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=Path("runs/reference-cifar10-cpu"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sender, receiver, data = reference_pair(args.run)
    points = [p.name for p in cut_points(sender.model)]
    results: dict[tuple[str, str], dict] = {}
    for objective in OBJECTIVES:
        config = StitchConfig.from_user({"objective": objective, "device": args.device})
        start = time.perf_counter()
        outcomes = stitch_grid(sender, receiver, [(p, p) for p in points], data,
                               stitch="bn-conv1x1-bn", config=config)
        seconds = time.perf_counter() - start
        for r, _ in outcomes:
            row = {"objective": objective, "point": r.sender_point,
                   "accuracy": round(r.stitched_accuracy, 4),
                   "low": round(r.accuracy_low, 4), "high": round(r.accuracy_high, 4),
                   "receiver_distance": round(r.receiver_distance, 3),
                   "receiver_own_distance": round(r.receiver_own_distance, 3),
                   "steps": r.steps, "converged": r.converged, "stop_reason": r.stop_reason}
            results[(objective, r.sender_point)] = row
            print(json.dumps(row), flush=True)
        print(json.dumps({"objective": objective, "seconds": round(seconds, 1),
                          "machine": machine()}), flush=True)
    print("| point | " + " | ".join(OBJECTIVES) + " |")
    print("| --- |" + " --- |" * len(OBJECTIVES))
    for p in points:
        cells = [results[(o, p)] for o in OBJECTIVES]
        print(f"| {p} | " + " | ".join(f"{100 * c['accuracy']:.1f}% ({c['receiver_distance']:.2f})"
                                       for c in cells) + " |")


if __name__ == "__main__":
    main()
