"""Issue-6 harness: Plato's stitch grid against the naive loop, on the same cells, machine and
data, in one run.

    python bench/grid_vs_naive.py [--train 10000 --test 2000 --naive-cells 8 --naive-epochs 15
                                   --naive-timed-epochs 2 --naive-reference FILE.jsonl ...
                                   --plato fast --plato lstsq --device cpu]

Grid: `resnet-1111` <-> `resnet-1112` (width 16), both orders, every block point, trained on a
CIFAR-10 subset of the JPEG copy in ../shared/data (trained once, cached in --out).

Naive loop, as the original study ran it: each stitch alone, in its own copy of the two
networks; a standard data pipeline (a torch Dataset that converts and normalises one image at a
time, a shuffling DataLoader); the sender prefix and the receiver suffix run on every step;
task loss from PyTorch's initialisation, Adam with a cosine schedule, `--naive-epochs` epochs
(15 on 10,000 images = 1,170 steps of 128, the steps of the study's 3 epochs on 50,000); then
the test set. Its cost is timed on `--naive-cells` cells spread evenly over the grid, for
`--naive-timed-epochs` epochs (an epoch costs the same every time: the time is extrapolated
linearly to `--naive-epochs` and to every cell). Its answers, the reference, come from the full
runs: `--naive-reference` files written by `bench/naive_reference.py` (same cells, epochs;
files with the same epochs and lr are other seeds: their mean is the reference, and the
distance between two seeds, the naive loop against itself, is printed), or, without them,
from full runs made here.

Plato: `stitch_grid` per ordered pair (shared passes, device-resident data), for each
configuration in `--plato` (repeatable): `fast` (`StitchConfig.fast()`: lstsq from 4,096
examples, then 2 task epochs of SGD at lr 0.1, batch 64 on a CPU, bf16 where native), `lstsq`,
`lstsq+task:E:LR:BATCH`, `converging` (`StitchConfig.converging()`, the default of every entry
point), or StitchConfig fields as JSON (`{"fast": true, ...}` starts from `fast()`,
`{"converging": true, ...}` from `converging()`).

Prints JSON lines and, per Plato configuration and reference, the line
`cpu-speedup-vs-naive: ...` (or `gpu-...`) for BENCHMARKS.md: the wall-time ratio and the mean
and maximum absolute accuracy difference over the sampled cells.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from common import cifar10, grid_networks, log, machine, naive_cell
from plato.models import cut_graph
from plato.stitch import NotStitchable, StitchConfig, stitch_grid
from plato.train import evaluate

# ---- the run ----------------------------------------------------------------------------------

def plato_config(name: str, device: str) -> StitchConfig:
    if name.startswith("{"):  # StitchConfig fields as JSON; "fast" / "converging": true
        fields = json.loads(name)  # start from fast() / converging()
        base = (StitchConfig.fast if fields.pop("fast", False) else
                StitchConfig.converging if fields.pop("converging", False) else StitchConfig)
        return base(device=device, **fields)
    if name == "fast":
        return StitchConfig.fast(device=device)
    if name == "converging":
        return StitchConfig.converging(device=device)
    if name == "lstsq":
        return StitchConfig(objective="lstsq", device=device)
    objective, epochs, lr, batch = name.split(":")  # lstsq+task:E:LR:BATCH
    return StitchConfig(objective=objective, epochs=int(epochs), lr=float(lr),
                        batch_size=int(batch), device=device)


def cell_name(s, r, sp, rp) -> str:
    return f"{s.name}:{sp}:{r.name}:{rp}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=10000, help="training images (CIFAR subset)")
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--train-epochs", type=int, default=15)
    p.add_argument("--naive-cells", type=int, default=8,
                   help="cells the naive loop is timed (and run) on; 0: no naive loop")
    p.add_argument("--naive-epochs", type=int, default=15)
    p.add_argument("--naive-timed-epochs", type=int, default=2)
    p.add_argument("--naive-lr", type=float, default=1e-2)
    p.add_argument("--naive-reference", type=Path, action="append", default=[],
                   help="naive_reference.py output: the reference answers (repeatable)")
    p.add_argument("--plato", action="append", default=[],
                   help="a Plato configuration (repeatable; the first is the headline): fast, "
                        "lstsq, lstsq+task:E:LR:BATCH, or StitchConfig fields as JSON "
                        "('{\"fast\": true, \"more_epochs\": 3}' starts from fast()); "
                        "default: fast")
    p.add_argument("--converged-reference", default=None,
                   help="a Plato configuration (as --plato) fitted far past convergence: every "
                        "--plato configuration is also compared with it on every stitchable "
                        "cell, not only the naive loop's sample")
    p.add_argument("--one-pair", action="store_true",
                   help="only resnet-1111 -> resnet-1112 (half the cells, half the time)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/bench/grid"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    ds = cifar10(train=args.train, test=args.test)
    a, b = grid_networks(args.out, args.train_epochs, args.train, args.device)
    acc = {id(c): evaluate(c.model, ds, device=args.device)["accuracy"] for c in (a, b)}
    log({"networks": {c.name: acc[id(c)] for c in (a, b)}})
    pairs = [(a, b), (b, a)][:1 if args.one_pair else 2]
    cells = [(s, r, sp.name, rp.name) for s, r in pairs
             for sp in cut_graph(s.model).points() for rp in cut_graph(r.model).points()]

    # Plato's grid, every cell, for each configuration asked for
    plato_runs = []
    names = (args.plato or ["fast"]) + ([args.converged_reference]
                                        if args.converged_reference else [])
    for name in names:
        config = plato_config(name, args.device)
        start = time.perf_counter()
        found, failed, epochs, steps, converged = {}, [], [], [], []
        for s, r in pairs:
            todo = [(sp, rp) for s_, r_, sp, rp in cells if (s_, r_) == (s, r)]
            grid = stitch_grid(s.model, r.model, todo, ds, config=config,
                               accuracies=(acc[id(s)], acc[id(r)]))
            for (sp, rp), (result, _) in zip(todo, grid, strict=True):
                found[cell_name(s, r, sp, rp)] = (None if isinstance(result, Exception)
                                                  else result.stitched_accuracy)
                if isinstance(result, Exception) and not isinstance(result, NotStitchable):
                    failed.append(f"{cell_name(s, r, sp, rp)}: {result}")
                elif not isinstance(result, Exception):
                    epochs.append(result.epochs)
                    steps.append(result.steps)
                    converged.append(result.converged)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        more = f" + up to {config.more_epochs}" if config.more_epochs else ""
        budget = ("until converged" if config.converges
                  else f"{config.sgd_epochs}{more} task epochs")
        label = (f"{name} ({config.objective}, {budget}, "
                 f"{config.optimizer} lr {config.lr:g}, batch {config.batch_size}, "
                 f"{config.precision})")
        plato_runs.append((label, seconds, found))
        log({"plato": label, "seconds": round(seconds, 1), "cells": len(cells),
             "failed": failed, "mean_task_epochs": round(sum(epochs) / max(1, len(epochs)), 2),
             "mean_steps": round(sum(steps) / max(1, len(steps))), "max_steps": max(steps),
             "converged": {str(k): converged.count(k) for k in set(converged)}})
    stitchable = [c for c in cells if plato_runs[0][2][cell_name(*c)] is not None]
    if args.converged_reference:  # run last, so it does not warm the others' caches
        *plato_runs, (ref_label, _, ref_found) = plato_runs
        for label, seconds, found in plato_runs:
            keys = [cell_name(*c) for c in stitchable]
            dacc = [100 * (found[k] - ref_found[k]) for k in keys]
            log({"plato": label, "reference": f"converged: {ref_label}", "cells": len(keys),
                 "seconds": round(seconds),
                 "mean_abs_dacc_pts": round(sum(abs(d) for d in dacc) / len(dacc), 2),
                 "max_abs_dacc_pts": round(max(abs(d) for d in dacc), 2),
                 "mean_signed_dacc_pts": round(sum(dacc) / len(dacc), 2)})

    if not args.naive_cells:  # Plato's configurations against each other only
        return
    # The naive loop on a sample of the stitchable cells: timed, and its answers
    step = max(1, len(stitchable) // args.naive_cells)
    sample = stitchable[::step][: args.naive_cells]
    runs = {}  # label -> one {cell: accuracy} per seed
    for path in args.naive_reference:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        label = f"naive, {rows[0]['epochs']} epochs, lr {rows[0].get('lr', 1e-3):g}"
        runs.setdefault(label, []).append({row["cell"]: row["naive"] for row in rows})
    references = {}  # label -> {cell: accuracy, the mean over the seeds given}
    for label, seeds in runs.items():
        common = set.intersection(*(set(r) for r in seeds))
        if len(seeds) > 1:
            label = f"{label}, mean of {len(seeds)} seeds"
            # The naive loop against itself: how far two seeds' answers are apart (every pair
            # of seeds), and how far one seed is from the mean of the others (what Plato's one
            # run is compared against, with one seed fewer in the mean).
            spread = [100 * abs(a[k] - b[k]) for i, a in enumerate(seeds) for b in seeds[i + 1:]
                      for k in sorted(common)]
            rest = [100 * abs(one[k] - sum(o[k] for o in seeds if o is not one) /
                              (len(seeds) - 1)) for one in seeds for k in sorted(common)]
            log({"reference": label, "seed_vs_seed_mean_abs_pts":
                 round(sum(spread) / len(spread), 2), "max_abs_pts": round(max(spread), 2),
                 "seed_vs_mean_of_the_others_mean_abs_pts": round(sum(rest) / len(rest), 2)})
        references[label] = {k: sum(r[k] for r in seeds) / len(seeds) for k in common}
    timed = argparse.Namespace(**{**vars(args), "naive_epochs": args.naive_timed_epochs})
    full = f"naive, {args.naive_epochs} epochs, lr {args.naive_lr:g}"
    per_epoch = []
    for s, r, sp, rp in sample:
        timings = {}
        got = naive_cell(s.model, r.model, sp, rp, ds, timed, timings)
        per_epoch.append((timings["train"] / args.naive_timed_epochs, timings["test"]))
        if not references:  # no reference files: the full runs, here
            references.setdefault(full, {})[cell_name(s, r, sp, rp)] = naive_cell(
                s.model, r.model, sp, rp, ds, args)
        log({"cell": cell_name(s, r, sp, rp), f"naive_{args.naive_timed_epochs}_epochs": got,
             "train_seconds_per_epoch": round(per_epoch[-1][0], 2),
             "test_seconds": round(per_epoch[-1][1], 2),
             **{label: ref.get(cell_name(s, r, sp, rp)) for label, ref in references.items()},
             **{label: found[cell_name(s, r, sp, rp)] for label, _, found in plato_runs}})
    per_cell = sum(args.naive_epochs * e + t for e, t in per_epoch) / len(per_epoch)
    naive_total = per_cell * len(stitchable)
    kind = "gpu" if args.device.startswith("cuda") else "cpu"
    lines = []
    for label, seconds, found in plato_runs:
        for ref_label, ref in references.items():
            keys = [cell_name(*c) for c in sample]
            missing = [k for k in keys if k not in ref]
            if missing:
                raise SystemExit(f"{ref_label}: no reference for {missing}")
            dacc = [100 * (found[k] - ref[k]) for k in keys]
            mean_abs = sum(abs(d) for d in dacc) / len(dacc)
            summary = {
                **machine(), "device": args.device, "train_images": args.train,
                "test_images": args.test,
                "cells": len(stitchable), "plato": label, "reference": ref_label,
                "naive_cells_measured": len(dacc),
                "naive_seconds_per_cell": round(per_cell, 1),
                "naive_extrapolated_seconds": round(naive_total),
                "plato_seconds": round(seconds), "speedup": round(naive_total / seconds, 1),
                "mean_abs_dacc_pts": round(mean_abs, 2),
                "max_abs_dacc_pts": round(max(abs(d) for d in dacc), 2),
                "mean_signed_dacc_pts": round(sum(dacc) / len(dacc), 2),
            }
            log(summary)
            lines.append(f"{kind}-speedup-vs-naive: {naive_total / seconds:.1f}x (mean |dacc| "
                         f"{mean_abs:.1f} pts, max {summary['max_abs_dacc_pts']:.1f} pts)"
                         f"  # {label} vs {ref_label}")
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
