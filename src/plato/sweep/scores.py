"""Model-level scores of a stored table: one number per pair of networks (`plato table`, its
JSON and the report), the two of plato.similarity.model_level.

    similarity measures   what the sweep stored with the table's permutation null: the most
                          similar cell and the mean along relative depth, each with its
                          p-value against the same score of each shuffle, its calibrated form
                          (0 at the null, 1 identical) and a jackknife interval over the
                          examples. A table swept without a null gets the two raw values only.
    stitched accuracy     (mean over seeds, or debiased against a control) the mean along
                          relative depth with the interval of its cells' per-example outcomes
                          averaged over the cells: crossed over stitch seeds and test examples
                          (stats.crossed_interval), one seed: Student t over the examples; and
                          the best cell, without an interval (the largest of many cell means
                          is biased up by the choosing, and the seeds' part of its variance is
                          not a smooth function of the outcomes). The debiased table is the
                          stitching's calibrated form: 0 where a random sender does as well.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from plato.similarity import MEASURES
from plato.similarity.model_level import SCORES, depth_matched, score_values
from plato.stats import seeds_examples_interval

if TYPE_CHECKING:
    import pandas as pd

NO_NULL = ("no null: sweep with `similarity: {permutations: K}` for p-values, calibrated "
           "scores and intervals")


def model_scores(cells: pd.DataFrame, values: pd.DataFrame, sender: str, receiver: str,
                 control: str, query, stored: pd.DataFrame) -> dict[str, dict] | None:
    """The scores of the table `query` (a plato.sweep.views.TableQuery) asks for, where the
    table has them: a similarity measure's mean, stitched accuracy's mean or its debiased
    difference; None for the other metrics and statistics."""
    from plato.sweep.tables import paired_differences

    metric, debiased = query.metric, query.debiased
    if metric in MEASURES and query.stat == "mean" and not debiased:
        return similarity_scores(values, stored, sender, receiver, control, metric)
    if metric != "stitched_accuracy":
        return None
    if debiased == "diff":
        return stitching_scores(values, paired_differences(cells, sender, receiver,
                                                           query.control))
    if not debiased and query.stat == "mean":
        return stitching_scores(values, cell_outcomes(cells, sender, receiver, control))
    return None


def similarity_scores(values: pd.DataFrame, stored: pd.DataFrame, sender: str, receiver: str,
                      control: str, measure: str) -> dict[str, dict]:
    """The scores of a similarity table: the stored ones (with their null) where the sweep
    computed a null, else the raw max and depth mean of `values`."""
    if not stored.empty:
        mine = stored[(stored.sender == sender) & (stored.receiver == receiver)
                      & (stored.control == control) & (stored.measure == measure)]
        if not mine.empty:
            out = {}
            for r in mine.to_dict("records"):
                score = {k: _number(r[k]) for k in (
                    "value", "bias_corrected", "low", "high", "null_mean", "p_value",
                    "calibrated", "calibrated_low", "calibrated_high")}
                score.update(cells=int(r["cells"]), examples=int(r["examples"]),
                             permutations=int(r["permutations"]))
                if r["score"] == "max":
                    score.update(row=r["row_point"], column=r["column_point"])
                out[r["score"]] = score
            return {name: out[name] for name in SCORES if name in out}
    larger = MEASURES[measure].larger_is_more_similar
    return _raw(values, larger, NO_NULL)


def stitching_scores(values: pd.DataFrame, outcomes: dict[tuple[str, str], np.ndarray]
                     ) -> dict[str, dict]:
    """The scores of a stitched-accuracy table (or a debiased one): `outcomes` holds each
    cell's per-example outcomes (or differences) over its seeds, (seeds, test examples)."""
    out = _raw(values, True, "no interval: the best of many cells is biased up by the "
               "choosing")
    matched = [(values.index[i], values.columns[j])
               for i, j in depth_matched(*values.shape)
               if np.isfinite(values.iat[i, j])]
    arrays = [outcomes.get(cell) for cell in matched]
    depth = out["depth_mean"]
    if not arrays or any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
        depth["note"] = "no interval: cells without per-example outcomes, or unequal seeds"
        return out
    y = np.mean(arrays, axis=0)  # (seeds, examples): each example's mean over the cells
    low, high = seeds_examples_interval(y)
    depth.update(low=_number(low), high=_number(high), seeds=len(y), examples=y.shape[1])
    depth.pop("note", None)
    return out


def cell_outcomes(cells: pd.DataFrame, sender: str, receiver: str, control: str
                  ) -> dict[tuple[str, str], np.ndarray]:
    """Each cell's per-example correctness over its seeds, (seeds, test examples)
    (tables.seed_outcomes); a cell with a seed that kept none is left out."""
    from plato.sweep.tables import seed_outcomes

    pick = cells[(cells.sender == sender) & (cells.receiver == receiver)
                 & (cells.control == control)]
    found = {cell: seed_outcomes(group)
             for cell, group in pick.groupby(["sender_point", "receiver_point"])}
    return {cell: y for cell, y in found.items() if y is not None}


def _raw(values: pd.DataFrame, larger: bool, note: str) -> dict[str, dict]:
    """The max and the depth mean of a table's values, with `note` saying what is missing."""
    table = values.to_numpy(dtype=float)
    defined = np.isfinite(table)
    found = score_values(table, defined, larger)
    out = {name: {"value": _number(float(found[name])), "note": note} for name in SCORES}
    out["max"]["cells"] = int(defined.sum())
    out["depth_mean"]["cells"] = sum(bool(defined[i, j])
                                     for i, j in depth_matched(*defined.shape))
    if defined.any():
        pick = np.where(defined, table, -np.inf if larger else np.inf)
        i, j = np.unravel_index((np.argmax if larger else np.argmin)(pick), pick.shape)
        out["max"].update(row=values.index[i], column=values.columns[j])
    return out


def _number(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)
