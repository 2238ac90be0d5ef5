"""What the interactive report holds, as plain data for its page: every table as a Plotly
figure (each control, metric and debiased view of each pair of networks) and, per cell, what a
reader wants when they click it: its interval, whether each seed's fit converged and why it
stopped, its steps, the distance of its activations from the receiver's, the same cell under
each control, trained minus control paired on the test examples, the similarity measures with
their null p-values, and links to its pictures.

Values are the stored ones, unrounded: the page rounds for display and keeps the exact value
beside it (the browser test compares them with the store).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from plato.report.figures import TableView, plotly_figure, table_view
from plato.report.page import slug
from plato.stats import seeds_examples_interval
from plato.sweep.tables import (
    debiased_interval,
    debiased_table,
    debiasing_controls,
    kind_and_interval,
    measure_columns,
    paired_differences,
    stat_table,
    table_keys,
)

# The stitching metrics a reader switches between (a network's own accuracy is one number per
# table, not a heatmap), then how each fit went.
EXPLORED = ("stitched_accuracy", "normalized_accuracy", "stitched_loss", "stitch_loss",
            "activation_mse", "activation_cka", "receiver_distance", "saliency_agreement",
            "saliency_agreement_sender", "deletion_area", "steps")
# What the details panel lists per seed of a stitching cell.
SEED_FIELDS = ("stitched_accuracy", "accuracy_low", "accuracy_high", "converged", "steps",
               "epochs", "examples_seen", "seconds", "stitched_loss", "receiver_distance",
               "receiver_own_distance", "stitch_parameters", "test_examples")
PLACE = ("sender", "receiver", "sender_point", "receiver_point")


def cell_id(sender: str, receiver: str, sender_point: str, receiver_point: str) -> str:
    """One cell's key in the page's data (every control of it shares the key): its four names
    joined by the unit separator, as the page's script joins them."""
    return "\x1f".join((sender, receiver, sender_point, receiver_point))


def _plain(value):
    """A JSON value: NaN and missing as null, numpy scalars as Python numbers."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _figure_json(view: TableView) -> dict:
    """The figure as JSON-ready data (Plotly's encoder: arrays as lists, NaN as null)."""
    return json.loads(plotly_figure(view).to_json())


def _entry(view: TableView, control: str, kind: str) -> dict:
    return {"sender": view.sender, "receiver": view.receiver, "metric": view.metric,
            "control": control, "view": kind, "rows": list(view.value.index),
            "columns": list(view.value.columns), "figure": _figure_json(view)}


def explorer_tables(cells: pd.DataFrame | None, sims: pd.DataFrame | None) -> list[dict]:
    """Every table the page can show: per pair, control and metric the mean over seeds
    ("mean"); for stitched accuracy, trained minus each random control with its paired
    interval ("debiased") and that difference over the receiver's accuracy minus the control
    ("normalized"); per similarity measure its values with their p-values ("measure": one
    value a cell, no seeds)."""
    tables = []
    if cells is not None:
        metrics = [m for m in EXPLORED if m in measure_columns(cells) and cells[m].notna().any()]
        for sender, receiver, control in table_keys(cells):
            for metric in metrics:
                view = table_view(cells, sender, receiver, control, metric)
                if np.isfinite(view.value.to_numpy()).any():
                    tables.append(_entry(view, control, "mean"))
        for sender, receiver in dict.fromkeys((s, r) for s, r, _ in table_keys(cells)):
            for random in debiasing_controls(cells, sender, receiver):
                tables += _debiased(cells, sender, receiver, random)
    if sims is not None:
        measures = [m for m in measure_columns(sims) if m in sims.columns
                    and not m.endswith(("_p", "_calibrated", "_rescaled"))]
        for sender, receiver, control in table_keys(sims):
            for measure in measures:
                view = table_view(sims, sender, receiver, control, measure)
                tables.append(_entry(view, control, "measure"))
    return tables


def _debiased(cells: pd.DataFrame, sender: str, receiver: str, random: str) -> list[dict]:
    n = stat_table(cells, sender, receiver, "trained->trained", "stitched_accuracy", "n")
    converged = (stat_table(cells, sender, receiver, "trained->trained", "converged")
                 if cells.converged.notna().any() else n * np.nan)
    low, high = debiased_interval(cells, sender, receiver, random)
    out = []
    for kind, normalized in (("debiased", False), ("normalized", True)):
        value = debiased_table(cells, sender, receiver, "stitched_accuracy", random, normalized)
        title = (f"{sender} -> {receiver}: stitched_accuracy, trained minus {random}"
                 + (" over the receiver's accuracy minus it" if normalized else ""))
        # the paired interval is the difference's; a ratio's is not that interval rescaled
        view = TableView(sender, receiver, title, f"{kind} stitched_accuracy", value,
                         low if not normalized else value * np.nan,
                         high if not normalized else value * np.nan, n.reindex_like(value),
                         converged.reindex_like(value), value * np.nan)
        out.append(_entry(view, random, kind))
    return out


def cell_details(cells: pd.DataFrame | None, sims: pd.DataFrame | None,
                 pictures: dict[str, list[dict]] | None = None) -> dict[str, dict]:
    """Per cell (cell_id), everything the store holds about it: per control its stitched
    accuracy's mean, interval (and what it is over), every seed's fit; trained minus each
    random control, paired; the similarity measures; links to its pictures."""
    details: dict[str, dict] = {}

    def slot(sender, receiver, sp, rp) -> dict:
        return details.setdefault(cell_id(sender, receiver, sp, rp), {
            "sender": sender, "receiver": receiver, "sender_point": sp, "receiver_point": rp,
            "stitching": [], "debiased": [], "similarity": [], "pictures": []})

    if cells is not None:
        for (sender, receiver, sp, rp, control), group in cells.groupby(
                [*PLACE, "control"], sort=False):
            slot(sender, receiver, sp, rp)["stitching"].append(_stitching(group, control))
        for sender, receiver in dict.fromkeys((s, r) for s, r, _ in table_keys(cells)):
            for random in debiasing_controls(cells, sender, receiver):
                difference = debiased_table(cells, sender, receiver, "stitched_accuracy",
                                            random)  # the debiased heatmap's values
                for (sp, rp), differences in paired_differences(cells, sender, receiver,
                                                                random).items():
                    low, high = seeds_examples_interval(differences)
                    slot(sender, receiver, sp, rp)["debiased"].append({
                        "control": random,
                        "difference": _plain(float(difference.loc[sp, rp])),
                        "low": _plain(float(low)), "high": _plain(float(high)),
                        "seeds": int(len(differences))})
    if sims is not None:
        measures = [m for m in measure_columns(sims) if m in sims.columns
                    and not m.endswith(("_p", "_calibrated", "_rescaled"))]
        for row in sims.to_dict("records"):
            entry = slot(row["sender"], row["receiver"], row["sender_point"],
                         row["receiver_point"])
            for m in measures:
                if _plain(row.get(m)) is None:
                    continue
                entry["similarity"].append({
                    "control": row["control"], "measure": m, "value": _plain(row[m]),
                    "calibrated": _plain(row.get(f"{m}_calibrated")),
                    "p_value": _plain(row.get(f"{m}_p")),
                    "fw_p_value": _plain(row.get(f"{m}_fw_p"))})
    for key, links in (pictures or {}).items():
        if key in details:
            details[key]["pictures"] = links
    return details


def _stitching(group: pd.DataFrame, control: str) -> dict:
    """One control of one cell: its stitched accuracy over the seeds and each seed's fit."""
    accuracy = group.stitched_accuracy.dropna()
    kind, (low, high) = kind_and_interval(group, "stitched_accuracy")
    seeds = []
    for row in group.sort_values("seed").to_dict("records"):
        result = json.loads(row["result"]) if isinstance(row.get("result"), str) else {}
        seeds.append({"seed": int(row["seed"]), "status": row["status"],
                      "stop_reason": result.get("stop_reason"),
                      **{f: _plain(row.get(f)) for f in SEED_FIELDS}})
    converged = group.converged.dropna() if "converged" in group else pd.Series([])
    return {"control": control, "stitched_accuracy": _plain(float(accuracy.mean()))
            if len(accuracy) else None,
            "low": _plain(float(low)), "high": _plain(float(high)),
            "interval": kind, "n": int(len(accuracy)),
            "converged": int(converged.astype(bool).sum()) if len(converged) else None,
            "fits": int(len(converged)), "seeds": seeds}


def cell_pictures(cells: pd.DataFrame | None, figure_ids: list[str]) -> dict[str, list[dict]]:
    """Per cell, the page's figures that show it: the reconstructions from the sender's and
    the receiver's cut points and the saliency maps of the cell (by their figure ids)."""
    if cells is None:
        return {}
    links: dict[str, list[dict]] = {}
    for sender, receiver, sp, rp in cells[list(PLACE)].drop_duplicates().itertuples(
            index=False):
        found = []
        for network in dict.fromkeys((sender, receiver)):
            for kind in ("reconstructions", "inversions"):  # one figure per network and role
                found += [{"label": f"{kind} of {network} ({fid.rsplit('-', 1)[-1]})",
                           "anchor": fid} for fid in figure_ids
                          if fid.startswith(slug(f"{kind}-{network}-"))]
        saliency = slug("saliency", sender, sp, receiver, rp)
        if saliency in figure_ids:
            found.append({"label": "saliency maps of this cell", "anchor": saliency})
        if found:
            links[cell_id(sender, receiver, sp, rp)] = found
    return links
