"""The geometric measures of a sweep: one similarity grid per (pair, control), stored beside
the stitching cells with the same orientation (rows = sender points).

They run in the driver: a grid costs one pass of both networks over the data, far less than
the stitches of the same pair, so they need no executor.
"""

from __future__ import annotations

import sys

import torch

from plato.data.datasets import Dataset
from plato.similarity import similarity_grid
from plato.sweep.jobs import spec_tables
from plato.sweep.keys import content_key, similarity_key
from plato.sweep.networks import Network
from plato.sweep.spec import SweepSpec
from plato.sweep.store import Store


def run_similarities(spec: SweepSpec, nets: dict[tuple[str, str], Network], dataset: Dataset,
                     store: Store, device: torch.device, progress: bool = True) -> int:
    """Compute and store every missing similarity table; returns how many were computed."""
    from tqdm import tqdm

    measures = [m for m in spec.measures if m != "stitch"]
    if not measures:
        return 0
    settings = spec.similarity.key_fields()
    done, data = store.similarity_keys(), dataset.fingerprint()
    work = []
    for t in spec_tables(spec, nets):
        keys = {m: {(a.name, b.name): similarity_key(
            t.sender.identity, t.receiver.identity, m, a.name, b.name, settings, data)
            for a in t.sender_points for b in t.receiver_points} for m in measures}
        missing = [m for m in measures if not set(keys[m].values()) <= done]
        if missing:
            work.append((t, keys, missing))
    bar = tqdm(work, desc="similarity tables", unit="pair", disable=not progress or not work,
               file=sys.stderr)
    for t, keys, missing in bar:
        sp, rp = t.sender_points, t.receiver_points
        tables = similarity_grid(
            t.sender.model, t.receiver.model, dataset, missing, spec.similarity, points_a=sp,
            points_b=rp, device=device, graphs=(t.sender.graph, t.receiver.graph))
        for m, table in tables.items():
            rows = []
            for i, a in enumerate(sp):
                for j, b in enumerate(rp):
                    rows.append({
                        "key": keys[m][(a.name, b.name)], "spec": spec.name,
                        "sender": t.sender_name, "receiver": t.receiver_name,
                        "control": t.control, "measure": m,
                        "sender_point": a.name, "sender_index": a.index,
                        "receiver_point": b.name, "receiver_index": b.index,
                        "value": float(table.values[i, j]), "reason": table.reasons[i][j],
                        "examples": table.examples, "layout": spec.similarity.layout,
                        **_null(table, i, j)})
            store.record_similarities(rows, _scores(table, rows[0], sorted(keys[m].values())))
    return len(work)


def _scores(table, first: dict, keys: list[str]) -> list[dict]:
    """The table's model-level scores, for the store (none without a null)."""
    names = ("spec", "sender", "receiver", "control", "measure")
    return [{"key": content_key([keys, name]), **{n: first[n] for n in names}, "score": name,
             **{k: v for k, v in score.to_dict().items() if k not in ("score", "row", "column")},
             "row_point": score.row, "column_point": score.column,
             "examples": table.null_examples, "permutations": table.permutations}
            for name, score in (table.scores or {}).items()]


def _null(table, i: int, j: int) -> dict:
    """A cell's permutation null, for its row in the store (none asked for: empty)."""
    if not table.permutations:
        return {}
    return {"null_mean": float(table.null_mean[i, j]), "calibrated": float(table.calibrated[i, j]),
            "p_value": float(table.p_values[i, j]),
            "fw_p_value": float(table.fw_p_values[i, j]), "fw_threshold": table.fw_threshold,
            "rescaled": float(table.rescaled[i, j]), "permutations": table.permutations}
