"""The geometric measures of a sweep: one similarity grid per (pair, control), stored beside
the stitching cells with the same orientation (rows = sender points).

They run in the driver: a grid costs one pass of both networks over the data, far less than
the stitches of the same pair, so they need no executor.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch

from plato.data.datasets import Dataset
from plato.similarity.grid import similarity_grid
from plato.sweep.jobs import Network, spec_points
from plato.sweep.spec import SweepSpec
from plato.sweep.store import Store

DEFAULTS = {"layout": "flatten", "batch_size": 256, "examples": None, "collect": 2048,
            "split": "test"}


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_similarities(spec: SweepSpec, nets: dict[tuple[str, str], Network], dataset: Dataset,
                     store: Store, device: torch.device, progress: bool = True) -> int:
    """Compute and store every missing similarity table; returns how many were computed."""
    from tqdm import tqdm

    measures = [m for m in spec.measures if m != "stitch"]
    if not measures:
        return 0
    settings = {**DEFAULTS, **spec.similarity}
    done = store.similarity_keys()
    work = []
    for s_name, r_name in spec.pairs:
        for control in spec.controls:
            s_role, r_role = control.split("->")
            sender, receiver = nets[(s_name, s_role)], nets[(r_name, r_role)]
            sp, rp = spec_points(spec, sender), spec_points(spec, receiver)
            keys = {m: {(a.name, b.name): _key({
                "sender": sender.identity, "receiver": receiver.identity, "measure": m,
                "sender_point": a.name, "receiver_point": b.name, "settings": settings,
                "data": dataset.fingerprint()}) for a in sp for b in rp} for m in measures}
            missing = [m for m in measures if not set(keys[m].values()) <= done]
            if missing:
                work.append((s_name, r_name, control, sender, receiver, sp, rp, keys, missing))
    bar = tqdm(work, desc="similarity tables", unit="pair", disable=not progress or not work,
               file=sys.stderr)
    for s_name, r_name, control, sender, receiver, sp, rp, keys, missing in bar:
        tables = similarity_grid(
            sender.model, receiver.model, dataset, missing, points_a=sp, points_b=rp,
            split=settings["split"], batch_size=settings["batch_size"],
            examples=settings["examples"], collect=settings["collect"],
            layout=settings["layout"], device=device, graphs=(sender.graph, receiver.graph))
        for m, table in tables.items():
            rows = []
            for i, a in enumerate(sp):
                for j, b in enumerate(rp):
                    rows.append({
                        "key": keys[m][(a.name, b.name)], "spec": spec.name, "sender": s_name,
                        "receiver": r_name, "control": control, "measure": m,
                        "sender_point": a.name, "sender_index": a.index,
                        "receiver_point": b.name, "receiver_index": b.index,
                        "value": float(table.values[i, j]), "reason": table.reasons[i][j],
                        "examples": table.examples, "layout": settings["layout"]})
            store.record_similarities(rows)
    return len(work)
