"""Issue 6 on a GPU: the per-cell cost of the 16-network grid, extrapolated to the whole grid.

    python bench/gpu_grid.py --data PATH/cifar10-jpeg-q75.tar.gz [--budget 420] [--quick]

The original study's grid: 16 small ResNets (`resnet-ABCD`, A..D in {1, 2} blocks per stage,
width 16) on CIFAR-10 (50,000 training images), every ordered pair of different networks, 3,840
stitches trained 3 epochs each, ~96 GPU-hours. Here: a sample of ordered pairs of those 16
networks, every block cut point of each (more cells per pair than the study's 16), timed with
Plato's `stitch_grid` in several configurations (first `fast`: `StitchConfig.fast()`'s GPU
fields, the setting the 1-GPU-hour target is about), a `torch.compile` check (`compile`: eager
against compiled, default mode and CUDA graphs), and the naive loop (`grid_vs_naive.naive_cell`:
each stitch alone, a per-image DataLoader, both frozen networks on every step) on a few cells.

The networks are freshly initialised: a stitch's cost does not depend on the weights. Each
configuration's per-cell time is split into the closed form (one statistics pass + solve +
the test measurement) and one task epoch, so the cost of `lstsq+task` with E task epochs is
`lstsq + E x epoch`. Prints JSON lines as it goes (also to $OUT/gpu_grid.jsonl when OUT is
set) and a summary table last. `--budget` (seconds) stops starting new measurements once spent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import torch

import plato
from common import log as print_line
from common import naive_cell
from plato.models import cut_graph
from plato.stitch import NotStitchable, Stitch, StitchConfig, stitch_grid

NETWORKS = ["resnet-" + "".join(b) for b in itertools.product("12", repeat=4)]
PAIRS = [("resnet-1111", "resnet-2222"), ("resnet-2222", "resnet-1111"),
         ("resnet-1212", "resnet-2121"), ("resnet-2211", "resnet-1122")]
STUDY_CELLS = 3840
# StitchConfig.fast()'s fields on a GPU (SGD at lr 0.1, closed form from 4,096 examples, batch
# 128, bf16 where native, channels last), less those each measurement sets
FAST_GPU = {k: v for k, v in StitchConfig.fast(device="cuda").to_dict().items()
            if k not in ("objective", "epochs", "seed", "device")}
CONFIGS = {  # name -> StitchConfig fields
    "fast": FAST_GPU,
    "bf16-cl-b128": dict(precision="bf16", channels_last=True, batch_size=128),
    "bf16-cl-b64": dict(precision="bf16", channels_last=True, batch_size=64),
    "fp32-b128": dict(precision="fp32", channels_last=False, batch_size=128),
    "bf16-cl-b512": dict(precision="bf16", channels_last=True, batch_size=512),
}
LOG = []


def log(obj: dict) -> None:
    LOG.append(obj)
    print_line(obj)
    if os.environ.get("OUT"):
        with open(Path(os.environ["OUT"]) / "gpu_grid.jsonl", "a") as f:
            f.write(json.dumps(obj) + "\n")


def timed_grid(s, r, ds, config: StitchConfig) -> tuple[float, int, int, float]:
    """(seconds, cells run, cells that failed, peak GiB) of one pair's whole block grid."""
    pairs = [(sp.name, rp.name) for sp in cut_graph(s).points() for rp in cut_graph(r).points()]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = stitch_grid(s, r, pairs, ds, config=config, accuracies=(0.1, 0.1))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    ran = sum(1 for res, _ in out if not isinstance(res, NotStitchable))
    failed = sum(1 for res, _ in out if isinstance(res, Exception)
                 and not isinstance(res, NotStitchable))
    return seconds, ran, failed, torch.cuda.max_memory_allocated() / 2**30


def compile_check(nets, ds, device: str) -> dict:
    """Does torch.compile pay for a stitch's task phase? One heavy cell (resnet-2222 stem ->
    layer1.0, the longest receiver suffix), one epoch, bf16 + channels_last, eager against
    compiled in the default mode and with CUDA graphs (the first 3 steps, where compilation
    happens, also reported on their own)."""
    from plato.data.loader import make_loader
    from plato.stitch.stitched import StitchedModel

    net = nets["resnet-2222"]
    graph = cut_graph(net)
    sp, rp = graph.point("stem"), graph.point("layer1.0")
    out = {}
    for mode in ("eager", "default", "reduce-overhead"):  # the last: CUDA graphs (launches)
        torch.manual_seed(0)
        model = StitchedModel(graph, sp, Stitch("bn-conv1x1-bn", sp.shape, rp.shape), graph,
                              rp).to(device, memory_format=torch.channels_last)
        suffix = model.receiver_suffix if mode == "eager" else \
            torch.compile(model.receiver_suffix, mode=mode)
        opt = torch.optim.Adam(model.stitch.parameters(), lr=1e-3)
        loader = make_loader(ds, "train", 128, device=device, train=True, augment="none",
                             channels_last=True)
        first = None
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i, (x, y) in enumerate(loader):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                with torch.no_grad():
                    a = model.sender_prefix(x)
                loss = torch.nn.functional.cross_entropy(suffix(model.stitch(a)).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i == 2:  # compilation happens in the first steps
                torch.cuda.synchronize()
                first = time.perf_counter() - start
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        out[mode] = {"epoch_seconds": round(total, 2), "first_3_steps": round(first, 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--budget", type=float, default=420, help="seconds; then stop measuring")
    p.add_argument("--quick", action="store_true", help="256 images, one small pair: a dry run")
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", default="fast,naive,compile," + ",".join(list(CONFIGS)[1:]),
                   help="comma-separated measurements in order: configurations and 'naive'")
    p.add_argument("--pairs", type=int, default=len(PAIRS),
                   help="ordered pairs timed per configuration (the first gets all)")
    args = p.parse_args()
    t0 = time.perf_counter()
    left = lambda: args.budget - (time.perf_counter() - t0)  # noqa: E731
    dev = torch.device(args.device)
    if dev.type == "cuda":
        log({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
             "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    else:  # a CPU dry run of the script's logic
        torch.cuda.synchronize = lambda: None
        torch.cuda.reset_peak_memory_stats = lambda: None
        torch.cuda.max_memory_allocated = lambda: 0
    torch.backends.cudnn.benchmark = True

    ds = plato.load_dataset(f"imagefolder:{args.data}")
    if args.quick:
        ds = ds.subset(train=256, test=256)
    log({"data": ds.name, "train": len(ds.train), "test": len(ds.test),
         "load_seconds": round(time.perf_counter() - t0, 1)})
    nets = {}
    for i, name in enumerate(NETWORKS):
        torch.manual_seed(i)
        nets[name] = plato.create_model(name, num_classes=10, input_shape=ds.input_shape,
                                        width=16).to(dev).eval()
    points = {n: cut_graph(m).points() for n, m in nets.items()}
    joinable = {}  # (sender shape, receiver shape) -> can a stitch join them

    def stitchable(sp, rp) -> bool:
        key = (tuple(sp.shape), tuple(rp.shape))
        if key not in joinable:
            try:
                Stitch("bn-conv1x1-bn", sp.shape, rp.shape)
                joinable[key] = True
            except NotStitchable:
                joinable[key] = False
        return joinable[key]

    grid_cells = sum(stitchable(sp, rp) for a in NETWORKS for b in NETWORKS if a != b
                     for sp in points[a] for rp in points[b])
    log({"networks": len(nets), "stitchable_block_cells_of_the_16_network_grid": grid_cells,
         "study_cells": STUDY_CELLS})
    pairs = [("resnet-1111", "resnet-1111")] if args.quick else PAIRS

    # Warm-up: CUDA context, cuDNN autotuning, allocator, on a small subset (not timed).
    warm = ds.subset(train=256 if args.quick else 1024, test=256 if args.quick else 1024)
    wanted = args.only.split(",")
    unknown = set(wanted) - set(CONFIGS) - {"naive", "compile"}
    if unknown:
        p.error(f"unknown measurement(s) {sorted(unknown)}; choose from {list(CONFIGS)}, naive "
                "and compile")
    for fields in (CONFIGS[w] for w in wanted if w in CONFIGS):
        for objective in ("lstsq", "lstsq+task"):
            timed_grid(nets[pairs[0][0]], nets[pairs[0][1]], warm, StitchConfig(
                objective=objective, epochs=1, device=args.device, **fields))
    log({"warmup_seconds": round(time.perf_counter() - t0, 1)})

    results = {}  # config -> list of (pair, cells, lstsq s, one task epoch s, peak GiB)
    naive = []
    order = [(w, None) if w in ("naive", "compile") else ("plato", w) for w in wanted]
    for kind, name in order:
        if kind == "compile":
            if dev.type == "cuda" and left() > 150:
                log({"compile_check": compile_check(nets, ds, args.device)})
            continue
        if kind == "naive":
            args.naive_epochs = 1
            for s_name, sp, r_name, rp in [("resnet-2222", "layer4.1", "resnet-2222", "stem"),
                                           ("resnet-1111", "layer2.0", "resnet-2121", "layer3.0")]:
                if left() < 30:
                    break
                timings = {}
                naive_cell(nets[s_name], nets[r_name], sp, rp, ds, args, timings)
                naive.append(timings)
                log({"naive_cell": f"{s_name}:{sp}->{r_name}:{rp}", "epochs": 1,
                     "train_seconds": round(timings["train"], 2),
                     "test_seconds": round(timings["test"], 2)})
            continue
        for s_name, r_name in pairs if name == wanted[0] else pairs[:args.pairs]:
            if left() < 45:
                log({"skipped": f"{name} {s_name}->{r_name}", "reason": "budget"})
                continue
            fields = CONFIGS[name]
            base = StitchConfig(objective="lstsq", device=args.device, **fields)
            one = StitchConfig(objective="lstsq+task", epochs=1, device=args.device, **fields)
            t_lstsq, cells, failed, mem_a = timed_grid(nets[s_name], nets[r_name], ds, base)
            t_task, _, failed_task, mem_b = timed_grid(nets[s_name], nets[r_name], ds, one)
            epoch = max(0.0, t_task - t_lstsq)
            results.setdefault(name, []).append((cells, t_lstsq, epoch))
            log({"config": name, "pair": f"{s_name}->{r_name}", "cells": cells,
                 "failed": [failed, failed_task], "lstsq_seconds": round(t_lstsq, 2),
                 "task_epoch_seconds": round(epoch, 2),
                 "per_cell_lstsq": round(t_lstsq / cells, 3),
                 "per_cell_task_epoch": round(epoch / cells, 3),
                 "peak_gib": round(max(mem_a, mem_b), 2)})

    # Summary: per-cell cost, extrapolated to the study's 3,840 cells and to every block cell.
    lines = ["", "| configuration | s/cell lstsq | s/cell per task epoch | lstsq+task 1 ep: "
             "3,840 cells | all stitchable block cells | lstsq+task 3 ep: 3,840 cells |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rows in results.items():
        cells = sum(r[0] for r in rows)
        lst = sum(r[1] for r in rows) / cells
        ep = sum(r[2] for r in rows) / cells
        one = lst + ep
        lines.append(f"| {name} | {lst:.3f} | {ep:.3f} | {STUDY_CELLS * one / 3600:.2f} h | "
                     f"{grid_cells * one / 3600:.2f} h | "
                     f"{STUDY_CELLS * (lst + 3 * ep) / 3600:.2f} h |")
        log({"summary": name, "cells_timed": cells, "per_cell_lstsq": round(lst, 4),
             "per_cell_task_epoch": round(ep, 4),
             "gpu_hours_3840_lstsq_task1": round(STUDY_CELLS * one / 3600, 3),
             "gpu_hours_all_block_cells_lstsq_task1": round(grid_cells * one / 3600, 3)})
    if naive:
        per_epoch = sum(t["train"] for t in naive) / len(naive)
        test = sum(t["test"] for t in naive) / len(naive)
        cell = 3 * per_epoch + test
        lines.append(f"| naive loop (3 epochs, alone) | - | {per_epoch:.2f} (one epoch) | "
                     f"{STUDY_CELLS * cell / 3600:.1f} h (3 epochs) | "
                     f"{grid_cells * cell / 3600:.1f} h | - |")
        log({"naive_per_cell_3_epochs": round(cell, 2),
             "naive_gpu_hours_3840": round(STUDY_CELLS * cell / 3600, 2)})
    lines.append(f"total wall {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
