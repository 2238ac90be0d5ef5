"""Issue-5 target: linear CKA for all block pairs of resnet18 against resnet34 on 10,000 images,
Plato's one-pass grid against the naive approach (extract and compare each pair separately),
in the same run, each side in its own process so its peak memory is its own.

    python bench/similarity_grid.py --images 10000 --naive-pairs 3 [--device cpu]

Both sides compute the same estimator (minibatch linear CKA, unbiased HSIC, batches of 256),
so their values must agree. The naive side extracts both whole activation matrices of a pair
(every image) and compares them; its cost is measured on `--naive-pairs` pairs spread over
the grid and extrapolated to all N x M pairs. The networks are freshly initialised (the cost
does not depend on training); the images are the CIFAR-10 JPEG test set in ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from common import cifar10, machine


def setup(images: int, device: str):
    import plato
    from plato.models import cut_graph

    ds = cifar10(test=images)
    nets = []
    for seed, name in ((0, "resnet18"), (1, "resnet34")):
        torch.manual_seed(seed)
        nets.append(plato.create_model(name, num_classes=10, input_shape=ds.input_shape)
                    .to(device).eval())
    return ds, nets, [cut_graph(n) for n in nets]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_grid(args) -> dict:
    from plato.similarity import SimilarityConfig, similarity_grid

    ds, (a, b), graphs = setup(args.images, args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    table = similarity_grid(a, b, ds, ["cka"], SimilarityConfig(batch_size=256),
                            device=args.device, graphs=graphs)["cka"]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    out = {"side": "grid", "seconds": time.perf_counter() - start, "pairs": table.values.size,
           "rows": table.rows, "columns": table.columns, "values": table.values.tolist(),
           "peak_rss_mib": peak_mib()}
    if args.device.startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


@torch.no_grad()
def run_naive(args) -> dict:
    from plato.data.loader import make_loader
    from plato.similarity import minibatch_cka

    ds, (a, b), (ga, gb) = setup(args.images, args.device)
    pa, pb = ga.points(), gb.points()
    n_pairs = len(pa) * len(pb)
    step = max(1, n_pairs // args.naive_pairs)
    chosen = list(range(0, n_pairs, step))[: args.naive_pairs]
    rows, seconds = [], []
    for k in chosen:
        i, j = divmod(k, len(pb))
        start = time.perf_counter()
        mats = []
        for graph, point in ((ga, pa[i]), (gb, pb[j])):  # the naive way: one prefix per layer,
            prefix, _ = graph.split(point)                # all images held at once
            mats.append(torch.cat([prefix(x) for x, _ in make_loader(ds, "test", 256,
                                                                      device=args.device)]))
        value = float(minibatch_cka(mats[0], mats[1], batch_size=256))
        del mats
        seconds.append(time.perf_counter() - start)
        rows.append({"row": pa[i].name, "column": pb[j].name, "value": value,
                     "seconds": seconds[-1]})
    mean = sum(seconds) / len(seconds)
    return {"side": "naive", "pairs_measured": rows, "seconds_per_pair": mean,
            "pairs": n_pairs, "extrapolated_seconds": mean * n_pairs,
            "peak_rss_mib": peak_mib()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--naive-pairs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--side", choices=["grid", "naive"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        print(json.dumps(run_grid(args) if args.side == "grid" else run_naive(args)))
        return
    results = {}
    for side in ("grid", "naive"):
        proc = subprocess.run([sys.executable, __file__, "--side", side, "--images",
                               str(args.images), "--naive-pairs", str(args.naive_pairs),
                               "--device", args.device], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    grid, naive = results["grid"], results["naive"]
    diffs = [abs(grid["values"][grid["rows"].index(r["row"])][grid["columns"].index(r["column"])]
                 - r["value"]) for r in naive["pairs_measured"]]
    summary = {
        **machine(), "device": args.device,
        "images": args.images, "pairs": grid["pairs"],
        "grid_seconds": round(grid["seconds"], 1),
        "grid_peak_rss_mib": round(grid["peak_rss_mib"]),
        "naive_seconds_per_pair": round(naive["seconds_per_pair"], 1),
        "naive_pairs_measured": len(naive["pairs_measured"]),
        "naive_extrapolated_seconds": round(naive["extrapolated_seconds"]),
        "naive_peak_rss_mib": round(naive["peak_rss_mib"]),
        "speedup": round(naive["extrapolated_seconds"] / grid["seconds"], 1),
        "max_abs_value_difference": max(diffs),
    }
    if "peak_gpu_mib" in grid:
        summary["grid_peak_gpu_mib"] = round(grid["peak_gpu_mib"])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
