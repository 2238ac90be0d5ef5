"""Similarity tables from the store: rows = sender cut points, columns = receiver cut points.

A cell that could not be stitched (or failed) is NaN: shown blank, never 0. Across seeds each
cell has a mean, a standard deviation, n and a 95% interval (`low`, `high`) over every source
of variation the cell averages over (plato.stats; `interval_kind` names it):

    stitched accuracy, one seed    Wilson over the test examples
    stitched accuracy, seeds       the seeds and the test examples, crossed (each seed on the
                                   same examples): never of zero width when the seeds agree
    another metric, seeds          Student t over the seeds (no per-example values are kept)

A debiased cell (trained minus its random control) is paired on the same test examples: a
paired t over them with one seed, the crossed interval of the seeds' paired differences with
several. Tables never average over networks (each pair of networks is its own table), so
network seeds are no source of a cell's variation.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from plato.errors import PlatoError
from plato.stats import crossed_interval, mean_interval, seeds_examples_interval
from plato.sweep.store import METRICS, Store

STATS = ("mean", "std", "n", "low", "high")
# How each cell was fitted, tabled like a metric (converged: the share of seeds; NaN for a
# fixed budget).
FIT_COLUMNS = ("steps", "examples_seen", "converged")
# numeric columns beside the metrics
INTERVAL_COLUMNS = ("test_examples", "accuracy_low", "accuracy_high", *FIT_COLUMNS)
NULL_COLUMNS = {"calibrated": "_calibrated", "p_value": "_p", "fw_p_value": "_fw_p",
                "rescaled": "_rescaled"}  # stored column -> suffix


def load_cells(store: Store, spec: str | None = None) -> pd.DataFrame:
    cells = store.cells(spec)
    if cells.empty:
        raise PlatoError(f"{store.path} holds no cells" + (f" for spec '{spec}'" if spec else ""))
    cells = cells[cells.status != "failed"].copy()  # failures stay out of every table (NaN)
    for m in (*METRICS, *INTERVAL_COLUMNS):
        cells[m] = pd.to_numeric(cells[m], errors="coerce")
    return cells


def load_similarities(store: Store, spec: str | None = None) -> pd.DataFrame:
    """The similarity measures of a store, one row per cell and one column per measure, in
    the shape of the stitching cells (seed 0), so every table function applies."""
    long = store.similarities(spec)
    if long.empty:
        raise PlatoError(f"{store.path} holds no similarity measures"
                         + (f" for spec '{spec}'" if spec else "")
                         + ": add them to the spec's `measures`")
    keys = ["spec", "sender", "receiver", "control", "sender_point", "sender_index",
            "receiver_point", "receiver_index"]
    # A spec rerun with other similarity settings stores new cells beside the old ones: the
    # tables show the latest of each.
    long = long.sort_values("finished").drop_duplicates(keys + ["measure"], keep="last")
    wide = long.set_index(keys + ["measure"])["value"].unstack("measure")
    for column, suffix in NULL_COLUMNS.items():  # the permutation null, where computed
        if column in long.columns and long[column].notna().any():
            extra = long.set_index(keys + ["measure"])[column].unstack("measure")
            wide = wide.join(extra.add_suffix(suffix))
    wide = wide.reset_index()
    wide.columns.name = None
    wide["seed"] = 0
    return wide


def load_for_metric(store: Store, spec: str | None, metric: str) -> pd.DataFrame:
    """The cells holding `metric`: stitching cells, or the similarity measures (a measure's
    `_calibrated` and `_p` columns: its permutation null)."""
    from plato.similarity import MEASURES as SIMILARITY

    if _measure_of(metric) in SIMILARITY:
        return load_similarities(store, spec)
    if metric not in (*METRICS, *FIT_COLUMNS):
        raise PlatoError(f"unknown metric '{metric}': choose one of "
                         f"{', '.join((*METRICS, *FIT_COLUMNS, *SIMILARITY))} (a measure's "
                         "permutation null: MEASURE_calibrated, MEASURE_p, MEASURE_fw_p, "
                         "MEASURE_rescaled)")
    return load_cells(store, spec)


def measure_columns(cells: pd.DataFrame) -> list[str]:
    from plato.similarity import MEASURES as SIMILARITY

    names = [*METRICS, *FIT_COLUMNS,
             *(m + suffix for m in SIMILARITY for suffix in ("", *NULL_COLUMNS.values()))]
    return [c for c in names if c in cells.columns]


def _measure_of(column: str) -> str:
    """cka_p -> cka, cka_fw_p -> cka; a plain metric stays itself."""
    for suffix in sorted(NULL_COLUMNS.values(), key=len, reverse=True):  # _fw_p before _p
        if column.endswith(suffix):
            return column.removesuffix(suffix)
    return column


def table_keys(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(sender, receiver, control) of every table in the cells, in a stable order."""
    keys = cells[["sender", "receiver", "control"]].drop_duplicates()
    return [tuple(r) for r in keys.itertuples(index=False)]


def select_tables(cells: pd.DataFrame, pair: tuple[str, str] | None = None,
                  control: str = "trained->trained",
                  debiased: bool = False) -> list[tuple[str, str, str]]:
    """The (sender, receiver, control) tables asked for: those of `pair` (default: every
    pair) and `control`; `debiased`: each pair once, debiased against `control`."""
    keys = [k for k in table_keys(cells) if not pair or k[:2] == tuple(pair)]
    if debiased:
        keys = sorted({(s, r, control) for s, r, _ in keys})
    else:
        keys = [k for k in keys if k[2] == control]
    if not keys:
        which = f"{pair[0]} -> {pair[1]}" if pair else "any pair"
        raise PlatoError(f"no table for {which} and control {control}")
    return keys


def debiasing_controls(cells: pd.DataFrame, sender: str, receiver: str) -> list[str]:
    """The random controls a pair's trained table can be debiased against (both stored)."""
    have = {c for s, r, c in table_keys(cells) if (s, r) == (sender, receiver)}
    return [c for c in ("random->trained", "trained->random")
            if {"trained->trained", c} <= have]


def _axis(cells: pd.DataFrame, role: str) -> list[str]:
    pts = cells[[f"{role}_point", f"{role}_index"]].drop_duplicates().sort_values(
        f"{role}_index")
    return list(pts[f"{role}_point"])


def stat_table(cells: pd.DataFrame, sender: str, receiver: str,
               control: str = "trained->trained", metric: str = "stitched_accuracy",
               stat: str = "mean") -> pd.DataFrame:
    """The (sender points x receiver points) matrix of one statistic of one metric."""
    if stat not in STATS:
        raise PlatoError(f"unknown statistic '{stat}': choose one of {', '.join(STATS)}")
    if stat in ("low", "high"):
        return interval_tables(cells, sender, receiver, control, metric)[stat == "high"]
    sel = _table_cells(cells, sender, receiver, control, metric)
    grouped = sel.groupby(["sender_point", "receiver_point"])[metric]
    values = {"mean": grouped.mean, "std": lambda: grouped.std(ddof=1),
              "n": grouped.count}[stat]()
    return _matrix(values, sel, sender, receiver)


def interval_tables(cells: pd.DataFrame, sender: str, receiver: str,
                    control: str = "trained->trained",
                    metric: str = "stitched_accuracy") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(low, high): the matrices of each cell's 95% interval (cell_interval), computed once
    for both ends."""
    sel = _table_cells(cells, sender, receiver, control, metric)
    ends = {key: cell_interval(group, metric) for key, group in
            sel.groupby(["sender_point", "receiver_point"])}
    tables = []
    for side in (0, 1):
        values = pd.Series({key: end[side] for key, end in ends.items()}, dtype=float)
        values.index.names = ["sender_point", "receiver_point"]
        tables.append(_matrix(values, sel, sender, receiver))
    return tables[0], tables[1]


def _table_cells(cells: pd.DataFrame, sender: str, receiver: str, control: str,
                 metric: str) -> pd.DataFrame:
    """The rows of one table, after checking the metric and that the table exists."""
    if metric not in measure_columns(cells):
        raise PlatoError(f"metric '{metric}' is not in these cells: choose one of "
                         f"{', '.join(measure_columns(cells))}")
    sel = cells[(cells.sender == sender) & (cells.receiver == receiver)
                & (cells.control == control)]
    if sel.empty:
        have = ", ".join(f"{s}->{r} ({c})" for s, r, c in table_keys(cells))
        raise PlatoError(f"no cells for {sender} -> {receiver} ({control}); the store has {have}")
    return sel


def _matrix(values: pd.Series, sel: pd.DataFrame, sender: str, receiver: str) -> pd.DataFrame:
    """Values indexed by (sender point, receiver point) as the table's matrix, points in
    network order."""
    matrix = values.unstack("receiver_point")
    matrix = matrix.reindex(index=_axis(sel, "sender"), columns=_axis(sel, "receiver"))
    matrix.index.name, matrix.columns.name = f"{sender} (sender)", f"{receiver} (receiver)"
    return matrix.astype(float)


INTERVAL_KINDS = {
    "wilson": "Wilson over the test examples (one seed)",
    "crossed": "the seeds and the test examples, crossed (ANOVA variance, Satterthwaite)",
    "seeds": "Student t over the seeds",
    "paired": "paired t over the test examples (one seed)",
    "none": "no interval",
}


def interval_kind(group: pd.DataFrame, metric: str) -> str:
    """Which interval a cell of these seeds' rows gets (INTERVAL_KINDS)."""
    return _interval(group, metric)[0]


def kind_and_interval(group: pd.DataFrame, metric: str) -> tuple[str, tuple[float, float]]:
    """interval_kind and cell_interval of one cell, computed once."""
    return _interval(group, metric)


def interval_description(cells: pd.DataFrame, sender: str, receiver: str, control: str,
                         metric: str = "stitched_accuracy", debiased: bool = False) -> str:
    """What a table's 95% intervals are over: their kind (INTERVAL_KINDS; the commonest where
    cells differ), the seeds and the test examples."""
    sel = cells[(cells.sender == sender) & (cells.receiver == receiver)
                & (cells.control == control)]
    groups = [g for _, g in sel.groupby(["sender_point", "receiver_point"])
              if g[metric].notna().any()]
    if not groups:
        return INTERVAL_KINDS["none"]
    kinds = pd.Series([interval_kind(g, metric) for g in groups]).value_counts()
    kind = kinds.index[0]
    if debiased:
        kind = {"wilson": "paired", "crossed": "crossed"}.get(kind, "none")
    seeds = int(sel.groupby(["sender_point", "receiver_point"]).seed.nunique().max())
    examples = pd.to_numeric(sel.get("test_examples"), errors="coerce").dropna()
    size = f"{seeds} seed{'s' if seeds > 1 else ''}" + (
        f" x {int(examples.max())} test examples" if len(examples) and kind != "seeds" else "")
    extra = "" if len(kinds) == 1 else f" ({len(groups) - int(kinds.iloc[0])} cells otherwise)"
    what = "trained minus the control, " if debiased else ""
    return f"95% intervals of {what}{INTERVAL_KINDS[kind]}: {size}{extra}"


def cell_interval(group: pd.DataFrame, metric: str) -> tuple[float, float]:
    """The 95% interval of one cell's mean over every source of variation it averages over
    (the module's text): crossed seeds x test examples for stitched accuracy of several seeds,
    Wilson over the examples for one; Student t over the seeds for other metrics; NaN where
    the store cannot give one (one seed of another metric)."""
    return _interval(group, metric)[1]


def _interval(group: pd.DataFrame, metric: str) -> tuple[str, tuple[float, float]]:
    """(its kind, the interval) of one cell's mean."""
    values = group[metric].dropna()
    if metric == "stitched_accuracy" and len(values) >= 2:
        seeds = seed_outcomes(group)
        if seeds is not None and len(seeds) >= 2:
            return "crossed", crossed_interval(seeds)
    if len(values) >= 2:
        return "seeds", mean_interval(values)
    if len(values) == 1 and metric == "stitched_accuracy" and "accuracy_low" in group:
        row = group.loc[values.index[0]]
        if pd.notna(row.accuracy_low):
            return "wilson", (float(row.accuracy_low), float(row.accuracy_high))
    return "none", (math.nan, math.nan)


def seed_outcomes(group: pd.DataFrame) -> np.ndarray | None:
    """The seeds' per-example outcomes of one cell's rows, (seeds, examples); None where a seed
    has none stored (stores written before they were kept) or the seeds saw different
    examples."""
    done = group[group.status == "done"] if "status" in group else group
    if "correct" not in done or "test_examples" not in done:
        return None
    # only the two columns outcomes() reads: a whole row as a dict costs 100x more
    rows = [outcomes({"correct": blob, "test_examples": n}) for blob, n in
            zip(done["correct"], done["test_examples"], strict=True)]
    if not rows or any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
        return None
    return np.stack(rows).astype(float)


def outcomes(row) -> np.ndarray | None:
    """A cell's per-test-example outcomes (1 right, 0 wrong), or None where not stored."""
    blob, n = row.get("correct"), row.get("test_examples")
    if not isinstance(blob, bytes) or not (n is not None and n > 0):
        return None
    return np.unpackbits(np.frombuffer(blob, np.uint8))[: int(row["test_examples"])]


def paired_differences(cells: pd.DataFrame, sender: str, receiver: str,
                       control: str = "random->trained") -> dict[tuple[str, str], np.ndarray]:
    """Per cell (sender point, receiver point), its seeds' per-example correctness minus the
    control's of the same seed, (seeds, test examples); only the seeds where both cells hold
    outcomes (stores written before they were kept hold none)."""
    pick = cells[(cells.sender == sender) & (cells.receiver == receiver)]
    rows = {(r["control"], r["sender_point"], r["receiver_point"], r["seed"]): r
            for r in pick.to_dict("records") if r["control"] in ("trained->trained", control)}
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for (c, sp, rp, seed), row in rows.items():
        if c != "trained->trained":
            continue
        a, b = outcomes(row), outcomes(rows.get((control, sp, rp, seed), {}))
        if a is not None and b is not None and len(a) == len(b):
            out.setdefault((sp, rp), []).append(a.astype(float) - b)
    return {cell: np.stack(d) for cell, d in out.items()}


def debiased_interval(cells: pd.DataFrame, sender: str, receiver: str,
                      control: str = "random->trained") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(low, high) of the 95% interval of each cell's stitched accuracy minus its control's,
    paired on the same test examples: a paired t over them (one seed), or the crossed interval
    of the seeds' paired differences, seeds x examples (several). NaN where a cell or its
    control holds no per-example outcomes (stores written before they were kept)."""
    trained = stat_table(cells, sender, receiver, "trained->trained")
    low = pd.DataFrame(np.nan, index=trained.index, columns=trained.columns)
    high = low.copy()
    for (sp, rp), differences in paired_differences(cells, sender, receiver, control).items():
        if sp in low.index and rp in low.columns:
            low.loc[sp, rp], high.loc[sp, rp] = seeds_examples_interval(differences)
    return low, high


def receiver_accuracy(cells: pd.DataFrame, receiver: str, control: str) -> float:
    sel = cells[(cells.receiver == receiver) & (cells.control == control)]
    return float(sel.receiver_accuracy.dropna().iloc[0]) if len(sel.receiver_accuracy.dropna()) \
        else float("nan")


def debiased_table(cells: pd.DataFrame, sender: str, receiver: str,
                   metric: str = "stitched_accuracy", control: str = "random->trained",
                   normalized: bool = False) -> pd.DataFrame:
    """trained - random control; normalized: (trained - random) / (receiver accuracy - random)."""
    trained = stat_table(cells, sender, receiver, "trained->trained", metric)
    random = stat_table(cells, sender, receiver, control, metric).reindex_like(trained)
    diff = trained - random
    if not normalized:
        return diff
    if "receiver_accuracy" not in cells.columns:
        raise PlatoError("the normalized debiased table divides by the receiver's accuracy: "
                         "it exists for stitching metrics only; use the difference")
    ceiling = receiver_accuracy(cells, receiver, "trained->trained")
    with np.errstate(divide="ignore", invalid="ignore"):
        return diff / (ceiling - random)


def latest_stitchable(table: pd.DataFrame, receiver_acc: float,
                      threshold: float = 0.9) -> pd.Series:
    """For each sender point, the deepest receiver point with accuracy >= threshold * receiver's.

    None where no receiver point reaches it.
    """
    bar = threshold * receiver_acc
    out = {}
    for sender_point, row in table.iterrows():
        ok = [col for col, v in row.items() if pd.notna(v) and v >= bar]
        out[sender_point] = ok[-1] if ok else None
    return pd.Series(out, dtype=object,
                     name=f"latest receiver point >= {threshold:g} x {receiver_acc:.4f}")


def latest_table(cells: pd.DataFrame, sender: str, receiver: str, control: str,
                 metric: str = "stitched_accuracy", threshold: float = 0.9) -> pd.Series:
    """`latest_stitchable` of one table of a stitching metric, against its receiver's
    accuracy."""
    if "receiver_accuracy" not in cells.columns:
        raise PlatoError("the latest stitchable point needs a stitching metric (it compares "
                         "with the receiver's accuracy)")
    acc = receiver_accuracy(cells, receiver, control)
    return latest_stitchable(stat_table(cells, sender, receiver, control, metric), acc,
                             threshold)


def tidy(cells: pd.DataFrame) -> pd.DataFrame:
    """All aggregated cells in long form, for CSV and Parquet export."""
    keys = ["spec", "sender", "receiver", "control", "sender_point", "sender_index",
            "receiver_point", "receiver_index"]
    long = cells.melt(id_vars=keys + ["seed"], value_vars=measure_columns(cells),
                      var_name="metric", value_name="value")
    agg = long.groupby(keys + ["metric"], dropna=False)["value"].agg(
        mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index()
    bounds = {(*key, m): _interval(group, m) for key, group in cells.groupby(keys, dropna=False)
              for m in measure_columns(cells)}
    rows = [bounds.get(tuple(k)) for k in agg[keys + ["metric"]].itertuples(index=False)]
    agg["low"], agg["high"] = [b[1][0] for b in rows], [b[1][1] for b in rows]
    agg["interval"] = [b[0] for b in rows]  # its kind: INTERVAL_KINDS
    return agg.sort_values(keys + ["metric"]).reset_index(drop=True)



COMPRESSION_COLUMNS = ("name", "kind", "family", "axis", "level", "source", "accuracy")


def compressed_networks(networks: pd.DataFrame) -> pd.DataFrame:
    """The pruned and distilled networks of a store's networks table (trained role): one row
    each with how it was made (kind, family, axis, level, source, method, ...) and what its
    checkpoint measured (sparsity, parameters, ...); empty where there are none."""
    if "compression" not in networks.columns:
        return pd.DataFrame(columns=COMPRESSION_COLUMNS)
    rows = []
    for net in networks[(networks.role == "trained") & networks.compression.notna()
                        ].itertuples():
        record = json.loads(net.compression)
        rows.append({"name": net.name, "accuracy": net.accuracy, "model": net.model,
                     **record})
    if not rows:
        return pd.DataFrame(columns=COMPRESSION_COLUMNS)
    return pd.DataFrame(rows).drop_duplicates("name", keep="last")


def networks_at_level(networks: pd.DataFrame, level: float) -> dict[str, str]:
    """family -> its network at `level` (a compression axis's level), for every family that
    has one."""
    comp = compressed_networks(networks)
    comp = comp[comp.level.notna() & np.isclose(comp.level.astype(float), level)]
    return dict(zip(comp.family, comp.name, strict=True))
