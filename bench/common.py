"""What the benchmark scripts share: the real data, the harness's CIFAR networks (trained once
and cached), the naive stitching loop they are compared with, a JSON log and the machine.

Run the scripts from the repository root (`python bench/grid_vs_naive.py ...`): Python puts a
script's folder on its path, so they import this module as `common`, and Plato as the
installed package (`make test` installs it; on a bare machine `PYTHONPATH=src`).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import plato
from plato.checkpoint import Checkpoint, load_checkpoint
from plato.data import Dataset
from plato.models import cut_graph
from plato.stitch import Stitch
from plato.stitch.stitched import freeze
from plato.train import Recipe, train_and_save

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PLATO_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR10 = SHARED / "cifar10-jpeg-q75.tar.gz"
MNIST = SHARED / "mnist-png.tar.gz"

# The harness's pair (grid_vs_naive.py and the scripts that reuse its networks): width 16,
# trained on a CIFAR-10 subset with SGD-Nesterov, warmup + cosine.
GRID_NETS = (("resnet-1111", 0), ("resnet-1112", 1))
GRID_RECIPE = dict(batch_size=128, lr=0.1, label_smoothing=0.1)


def log(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def machine() -> dict:
    """The machine and versions a measurement ran on, for BENCHMARKS.md."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"machine": gpu or platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def reference_pair(run: Path) -> tuple[Checkpoint, Checkpoint, Dataset]:
    """The reference study's cached resnet-1111 and resnet-1111-seed2 (in `run`'s networks/)
    and its data (10,000 CIFAR-10 JPEG training images, 2,000 test images), each network fed
    for that data."""
    from plato.data import load_dataset

    nets = sorted((run / "networks").glob("resnet-1111-*.ckpt"))
    sender = load_checkpoint(next(p for p in nets if "seed2" not in p.name))
    receiver = load_checkpoint(next(p for p in nets if "seed2" in p.name))
    data = load_dataset(f"imagefolder:{CIFAR10}").subset(train=10000, test=2000)
    sender.for_dataset(data)
    receiver.for_dataset(data)
    return sender, receiver, data


def cifar10(train: int | None = None, test: int | None = None) -> Dataset:
    """The CIFAR-10 JPEG copy in ../shared/data, optionally a seeded subset of each split."""
    ds = plato.load_dataset(f"imagefolder:{CIFAR10}")
    return ds.subset(train=train, test=test) if train or test else ds


def trained(model: str, ds: Dataset, recipe: Recipe, path: Path,
            device: str | torch.device = "cpu", **options) -> Checkpoint:
    """The network at `path`, trained there first if it is not."""
    if not path.exists():
        train_and_save(model, ds, recipe, path, progress=False, **options)
    return load_checkpoint(path, device=device)


def grid_networks(out: Path, train_epochs: int = 15, train: int = 10000,
                  device: str = "cpu") -> list[Checkpoint]:
    """The harness's two networks, trained on a `train`-image CIFAR-10 subset for
    `train_epochs` epochs, once: cached in `out` (grid_vs_naive.py's defaults are the
    networks every other script reads)."""
    nets = []
    for name, seed in GRID_NETS:
        path = out / f"{name}-w16-seed{seed}-e{train_epochs}-n{train}.ckpt"
        recipe = Recipe(epochs=train_epochs, seed=seed, device=device, **GRID_RECIPE)
        ds = cifar10(train=train) if not path.exists() else None
        nets.append(trained(name, ds, recipe, path, device, width=16))
    return nets


# ---- the naive loop ---------------------------------------------------------------------------

class PerImage(torch.utils.data.Dataset):
    """The standard pipeline: one image converted and normalised per __getitem__."""

    def __init__(self, split, mean, std) -> None:
        self.images, self.labels = split.images, split.labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float().div(255)
        return (x - self.mean) / self.std, self.labels[i]


def naive_cell(sender, receiver, sp, rp, ds, args, timings: dict | None = None) -> float:
    """One stitch trained alone, as the original study ran it: its own copy of the two
    networks, a per-image DataLoader, both frozen parts on every step, task loss from
    PyTorch's initialisation, Adam with a cosine schedule (`args.naive_epochs`, `naive_lr`,
    `naive_seed`, `device`). Returns the test accuracy; `timings` gets train and test seconds."""
    device = torch.device(args.device)
    s_net, r_net = copy.deepcopy(sender).to(device), copy.deepcopy(receiver).to(device)
    s_graph, r_graph = cut_graph(s_net), cut_graph(r_net)
    prefix = freeze(s_graph.split(sp)[0])
    suffix = freeze(r_graph.split(rp)[1])
    torch.manual_seed(getattr(args, "naive_seed", 0))  # the stitch's init and the data order
    stitch = Stitch("bn-conv1x1-bn", s_graph.point(sp).shape, r_graph.point(rp).shape).to(device)
    train_data = torch.utils.data.DataLoader(PerImage(ds.train, ds.mean, ds.std), batch_size=128,
                                             shuffle=True)
    test_data = torch.utils.data.DataLoader(PerImage(ds.test, ds.mean, ds.std), batch_size=512)
    opt = torch.optim.Adam(stitch.parameters(), lr=getattr(args, "naive_lr", 1e-3))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.naive_epochs * len(train_data))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(args.naive_epochs):
        stitch.train()
        for x, y in train_data:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(suffix(stitch(prefix(x))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    sync()
    fitted = time.perf_counter()
    stitch.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_data:
            correct += int((suffix(stitch(prefix(x.to(device)))).argmax(1) == y.to(device)).sum())
    if timings is not None:
        timings.update(train=fitted - start, test=time.perf_counter() - fitted)
    return correct / len(ds.test)
