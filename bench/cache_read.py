"""Where the activation cache pays (issue 6): one training epoch of the sender's activations at
every cut point, computed (the sender's pass, as without a cache) against read back from
`CachedActivations` on the device (here: memory), from its memory-mapped files while the page
cache holds them (warm), and from the disk itself (cold: the page cache dropped first, as when
the files are larger than the memory; needs root, else skipped).

    python bench/cache_read.py [--train 10000 --batch-size 64]

Uses `resnet-1111` (width 16) as `grid_vs_naive.py` trained and cached it, the fast setting's
precision (`auto`), channels last, the CIFAR-10 JPEG subset. `<tier>_fill_s` is the first
epoch with a cache (computing and storing), `<tier>_read_s` a later one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from common import cifar10, grid_networks
from plato.data.loader import make_loader
from plato.device import autocast, layout_of
from plato.models import cut_graph
from plato.stitch.activations import Activations, CachedActivations


def epoch_seconds(loader, fn) -> float:
    start = time.perf_counter()
    for x, _ in loader:
        fn(x, loader.indices)
    return time.perf_counter() - start


def drop_page_cache() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    args = p.parse_args()
    ds = cifar10(train=args.train, test=100)
    net = grid_networks(args.out)[0].model.eval()
    graph = cut_graph(net)
    source = Activations.of(graph, graph.points()).to("cpu", torch.channels_last)
    loader = make_loader(ds, "train", args.batch_size, device="cpu", train=True,
                         augment="none", seed=0, channels_last=True)
    row = {"train_images": args.train, "batch_size": args.batch_size,
           "points": len(graph.points())}
    with autocast(torch.device("cpu"), "auto"):
        row["compute_s"] = round(epoch_seconds(loader, lambda x, i: source(x)), 2)
        for tier in ("device", "disk"):
            cache = CachedActivations(source, loader.num_examples, tier)
            row[f"{tier}_fill_s"] = round(epoch_seconds(loader, cache), 2)  # compute + store
            row[f"{tier}_read_s"] = round(epoch_seconds(loader, cache), 2)
            assert cache.where == tier and cache.hits > 0, (cache.where, cache.hits)
        row["cache_mb"] = round(sum(v.numel() * v.element_size()
                                    for v in cache.store.values()) / 1e6)
        # Cold: the same rows in files whose pages are not in memory (mapped, private).
        with tempfile.TemporaryDirectory(dir=Path.cwd() / "runs") as tmp:
            paths = {}
            for i, (point, kept) in enumerate(cache.store.items()):
                paths[point] = (Path(tmp) / f"{i}.bin", kept)
                # the stored bytes as laid out (NHWC for 4-d channels-last activations)
                flat = kept.permute(0, 2, 3, 1) if kept.dim() == 4 else kept
                flat.contiguous().view(torch.uint8).numpy().tofile(paths[point][0])
            del cache
            if drop_page_cache():
                cold = {}
                for point, (path, kept) in paths.items():
                    flat = torch.from_file(str(path), shared=False, size=kept.numel(),
                                           dtype=kept.dtype)
                    cold[point] = flat.view(kept.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2) \
                        if kept.dim() == 4 else flat.view(kept.shape)
                row["disk_cold_read_s"] = round(epoch_seconds(
                    loader, lambda x, i: {k: v[i].contiguous(memory_format=layout_of(v))
                                          for k, v in cold.items()}), 2)
            else:
                row["disk_cold_read_s"] = None  # not root: the page cache cannot be dropped
    row["torch"] = torch.__version__
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
