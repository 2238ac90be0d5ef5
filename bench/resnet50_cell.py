"""Issue-32 target: the cost of one cell between two torchvision ResNet-50s at 224 pixels.

    .venv-vision/bin/python bench/resnet50_cell.py --phase import
    .venv-vision/bin/python bench/resnet50_cell.py --phase stitch
    .venv-vision/bin/python bench/resnet50_cell.py --phase similarity --memory-gb 4

(torchvision needs the vision environment: `make test-vision` builds it.) Two ResNet-50s
(seeds 0 and 1, their initialisation: nothing is downloaded; the cost does not depend on the
weights) are imported as a user would, `--input-size 224 --normalisation imagenet`, on a
seeded subset of the CIFAR-10 copy, whose 32-pixel images the input adapter resizes to 224 on
the device. Each phase runs in its own process, so its peak resident memory (ru_maxrss) is its
own:

- stitch: one `bn-conv1x1-bn` task stitch from A's `--point` into B's, `--epochs` over the
  training subset, then its test accuracy (what one cell of a grid costs with a fixed budget);
- similarity: linear CKA between every block point of A and of B on `--collect` examples, held
  within `--memory-gb` (plato.similarity.held: how many passes that takes).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from common import cifar10, log, machine
from plato.checkpoint import load_checkpoint
from plato.models import cut_graph
from plato.similarity import SimilarityConfig, similarity_grid
from plato.similarity.held import plan_groups
from plato.stitch import StitchConfig, stitch_networks
from plato.train import import_and_save

MODEL = "torchvision:resnet50"


def peak_gb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase", choices=("import", "stitch", "similarity"), required=True)
    parser.add_argument("--train", type=int, default=512, help="training images (subset)")
    parser.add_argument("--test", type=int, default=256, help="test images (subset)")
    parser.add_argument("--point", default="layer2.3")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--collect", type=int, default=256)
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/resnet50"))
    args = parser.parse_args()
    ds = cifar10(train=args.train, test=args.test)
    paths = [args.out / f"resnet50-seed{seed}-224.ckpt" for seed in (0, 1)]
    progress = sys.stderr.isatty()
    if args.phase == "import":
        args.out.mkdir(parents=True, exist_ok=True)
        for seed, path in enumerate(paths):
            import torch

            torch.manual_seed(seed)
            start = time.perf_counter()
            _, accuracy = import_and_save(MODEL, ds, path, device="cpu",
                                          normalisation="imagenet", input_size=(224, 224))
            log({"phase": "import", "seed": seed, "test_images": args.test,
                 "seconds": round(time.perf_counter() - start, 1), "accuracy": accuracy,
                 "peak_rss_gb": peak_gb()})
        return
    a, b = (load_checkpoint(p) for p in paths)
    for ckpt in (a, b):
        ckpt.for_dataset(ds)
    if args.phase == "stitch":
        start = time.perf_counter()
        result, _ = stitch_networks(
            a, b, args.point, args.point, ds, stitch="bn-conv1x1-bn",
            config=StitchConfig(epochs=args.epochs, batch_size=args.batch_size,
                                activation_cache="off"),
            progress=progress)
        seconds = time.perf_counter() - start
        log({"phase": "stitch", "point": args.point, "train_images": args.train,
             "test_images": args.test, "epochs": args.epochs, "seconds": round(seconds, 1),
             "steps": result.steps, "examples_seen": result.examples_seen,
             "fit_seconds": round(result.seconds, 1), "stitched_accuracy": result.stitched_accuracy,
             "peak_rss_gb": peak_gb(), **machine()})
    else:
        start = time.perf_counter()
        tables = similarity_grid(
            a.model, b.model, ds, ["linear_cka"],
            SimilarityConfig(batch_size=args.batch_size, collect=args.collect,
                             memory_gb=args.memory_gb), device="cpu", progress=progress)
        seconds = time.perf_counter() - start
        table = tables["linear_cka"]
        points = [p for ckpt in (a, b) for p in cut_graph(ckpt.model).points()]
        passes = plan_groups([p.shape for p in points], [p.name for p in points],
                             args.collect, "flatten", True, int(args.memory_gb * 2**30))
        log({"phase": "similarity", "collect": args.collect, "memory_gb": args.memory_gb,
             "points": [len(table.rows), len(table.columns)], "passes": len(passes),
             "seconds": round(seconds, 1), "peak_rss_gb": peak_gb(),
             "diagonal_mean": float(table.values.diagonal().mean()), **machine()})


if __name__ == "__main__":
    main()
