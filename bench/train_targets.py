"""Training targets of the foundation issue, measured on this machine.

    python bench/train_targets.py digits          # resnet-1111 w16 (target >= 97%, <= 30 s)
    python bench/train_targets.py mnist-mlp       # an MLP on the MNIST PNG copy (target >= 98%)
    python bench/train_targets.py mnist-cnn       # cnn-4 on MNIST (target >= 99%)
    python bench/train_targets.py cifar --epochs 5 10 20   # resnet-1111 w16, accuracy vs time

Each run prints one JSON line: model, dataset, recipe, test accuracy, seconds, versions.
Real data is read from ../shared/data (or $PLATO_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

import plato
from common import CIFAR10, MNIST, machine
from plato.train import Recipe, train

# ---- targets: model, options, dataset, recipe -------------------------------------------------
TARGETS = {
    "digits": ("resnet-1111", {"width": 16}, "digits",
               dict(epochs=15, batch_size=64)),
    "mnist-mlp": ("mlp-1024x1024", {}, f"imagefolder:{MNIST}",
                  dict(epochs=12, batch_size=128, label_smoothing=0.0)),
    "mnist-cnn": ("cnn-4", {"width": 32}, f"imagefolder:{MNIST}",
                  dict(epochs=4, batch_size=128)),
    "cifar": ("resnet-1111", {"width": 16}, f"imagefolder:{CIFAR10}",
              dict(epochs=10, batch_size=256, lr=0.2, label_smoothing=0.1)),
    "cifar-resnet18": ("resnet18", {}, f"imagefolder:{CIFAR10}",
                       dict(epochs=30, batch_size=512, lr=0.4, label_smoothing=0.1,
                            precision="bf16")),
}


def run(target: str, epochs: int | None, device: str, seed: int) -> dict:
    name, options, dataset, recipe_kw = TARGETS[target]
    if epochs:
        recipe_kw = {**recipe_kw, "epochs": epochs}
    ds = plato.load_dataset(dataset)
    recipe = Recipe(**recipe_kw, seed=seed, device=device)
    torch.manual_seed(seed)
    model = plato.create_model(name, num_classes=ds.num_classes, input_shape=ds.input_shape,
                               **options)
    result = train(model, ds, recipe, progress=sys.stderr.isatty())
    return {
        "target": target, "model": name, "options": options, "dataset": ds.short_name,
        "recipe": recipe.to_dict(), "test_accuracy": round(result.test_accuracy, 4),
        "seconds": round(result.seconds, 1), "images_per_second": round(
            result.images_per_second), "curve": [round(h["test_accuracy"], 4)
                                                 for h in result.history],
        **machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--epochs", type=int, nargs="*", default=[None])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for epochs in args.epochs:
        print(json.dumps(run(args.target, epochs, args.device, args.seed)), flush=True)


if __name__ == "__main__":
    main()
