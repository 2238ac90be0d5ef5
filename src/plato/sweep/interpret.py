"""Interpretation results in a run folder: reconstructions per (network, role, cut point),
stored like a sweep's cells (one row per content key, skipped when done, so a run resumes),
their pictures' tensors beside the store under interpret/.

They run in the driver: one reconstruction costs a decoder's fit, a few seconds to minutes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from plato.checkpoint import Checkpoint
from plato.data.datasets import Dataset
from plato.data.images import shown_images
from plato.errors import PlatoError
from plato.files import write_safetensors
from plato.interpret.invert import InvertConfig, invert_point
from plato.models.cuts import CutPoint
from plato.sweep.keys import content_key
from plato.sweep.networks import Network
from plato.sweep.store import Store


def invert_key(network: str, point: str, config: InvertConfig, data: str) -> str:
    """A reconstruction's key: the network's identity, the cut point (by name), every invert
    setting and the data's fingerprint."""
    return content_key({"kind": "invert", "network": network, "point": point,
                        "settings": config.to_dict(), "data": data})


@dataclass
class InversionJob:
    key: str
    net: Network
    point: CutPoint


def run_inversions(spec_name: str, nets: Sequence[Network],
                   points: dict[str, Sequence[CutPoint]], dataset: Dataset, store: Store,
                   run_dir: Path, config: InvertConfig, device: torch.device,
                   progress: bool = True) -> tuple[list[str], int]:
    """Fit and store every missing reconstruction of `nets` (each in its role) at their
    `points` (by network name); returns every reconstruction's key and how many were
    computed."""
    from tqdm import tqdm

    data, done = dataset.fingerprint(), store.interpretation_keys()
    jobs = [InversionJob(invert_key(net.identity, p.name, config, data), net, p)
            for net in nets for p in points[net.name]]
    todo = [j for j in jobs if j.key not in done]
    folder = run_dir / "interpret"
    if todo:
        write_safetensors(folder / "originals.safetensors",
                          {"images": dataset.test.images[shown_images(dataset, config.images)]})
    bar = tqdm(todo, desc="reconstructions", unit="point", disable=not progress or not todo,
               file=sys.stderr, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix(network=f"{job.net.name} ({job.net.role})", point=job.point.name)
        prefix = job.net.graph.split(job.point)[0]
        result = invert_point(prefix, dataset, config, device, progress=progress,
                              desc=f"decoder {job.point.name}")
        tensors = {"decoder": result.shown}
        if result.optimised is not None:
            tensors["optimised"] = result.optimised
        path = write_safetensors(folder / f"{job.key[:24]}.safetensors", tensors,
                                 {"key": job.key})
        store.record_interpretation(
            job.key, spec_name, "invert", job.net.name, job.net.role, job.point.name,
            job.point.index, {**result.to_dict(), "shape": list(job.point.shape)},
            file=str(path.relative_to(run_dir)))
    return [j.key for j in jobs], len(todo)


def stored_pictures(run_dir: Path, file: str | None) -> dict[str, torch.Tensor]:
    """The uint8 image tensors a stored result keeps (empty if its file is gone)."""
    path = run_dir / file if file else None
    return load_file(path) if path is not None and path.is_file() else {}


def inversions_table(store: Store, keys: Sequence[str]) -> pd.DataFrame:
    """The stored reconstructions with these keys, one row each, in the keys' order."""
    frame = store.interpretations("invert").set_index("key")
    missing = [k for k in keys if k not in frame.index]
    if missing:
        raise PlatoError(f"{len(missing)} reconstructions are not in {store.path}: run again")
    return frame.loc[list(keys)].reset_index()


# What a reconstructed point reports (plato invert --json), in this order.
POINT_FIELDS = ("network", "role", "point", "point_index", "psnr", "ssim", "psnr_std",
                "ssim_std", "test_examples", "optimised_psnr", "optimised_ssim", "steps",
                "converged", "stop_reason", "heldout_mse", "decoder_parameters", "shape",
                "file")


def network_name(path: str | Path) -> str:
    """A checkpoint file's network name: its file name without .ckpt or .safetensors."""
    return Path(path).name.removesuffix(".safetensors").removesuffix(".ckpt")


def invert_checkpoint(ckpt: Checkpoint, dataset: Dataset, run_dir: Path, config: InvertConfig,
                      points: Sequence[str | int] | None = None, granularity: str = "block",
                      control: bool = True, device: torch.device | str = "cpu",
                      progress: bool = True) -> tuple[pd.DataFrame, int]:
    """Reconstructions from the cut points of a checkpoint's network (default every point at
    `granularity`) and, with `control`, of its random-init control, stored in the run
    folder's store so a rerun computes only what is missing: (one row per network and point,
    how many were computed now)."""
    from plato.device import resolve_device
    from plato.sweep.networks import random_control
    from plato.train import evaluate

    device = resolve_device(str(device))
    name = network_name(ckpt.path)
    acc = evaluate(ckpt.model.to(device), dataset, device=device)["accuracy"]
    nets = [Network(name, "trained", ckpt.model, ckpt.content_hash, acc, str(ckpt.path))]
    if control:
        nets.append(random_control(name, ckpt, 0, dataset, device))
    graph = nets[0].graph
    chosen = ([graph.point(p, granularity) for p in points] if points
              else graph.points(granularity))
    with Store(run_dir / "results.sqlite") as store:
        keys, computed = run_inversions(f"invert:{name}", nets, {name: chosen}, dataset, store,
                                        run_dir, config, device, progress=progress)
        return inversions_table(store, keys), computed
