"""A store as one long-form table (one row per cell and metric), in the forms other tools
read: CSV, Parquet (pyarrow), JSON records. The schema (README, "Exports"):

    spec, kind (stitch | similarity), dataset, sender, receiver, control, sender_point,
    sender_index, receiver_point, receiver_index, stitch, objective, seed, metric, value,
    low, high, n, interval, converged, stop_reason, p_value, fw_p_value, key

A stitching cell gives one row per metric it stored (seed by seed: the tables' means over seeds
are a view of these rows); its stitched accuracy carries its 95% Wilson interval over its `n`
test examples. A similarity cell gives one row for its measure (`seed` empty), with the
permutation null's p-values where the spec asked for one. Failed cells are left out (their
reasons are in the store); values are as stored, never rounded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from plato.errors import PlatoError
from plato.files import write_file
from plato.sweep.store import METRICS, Store

COLUMNS = ("spec", "kind", "dataset", "sender", "receiver", "control", "sender_point",
           "sender_index", "receiver_point", "receiver_index", "stitch", "objective", "seed",
           "metric", "value", "low", "high", "n", "interval", "converged", "stop_reason",
           "p_value", "fw_p_value", "key")
FORMATS = ("csv", "parquet", "json")
PLACE = ["spec", "sender", "receiver", "control", "sender_point", "sender_index",
         "receiver_point", "receiver_index"]
# Each column's type (pandas' nullable kinds: a similarity cell has no seed, a fixed budget no
# convergence), what an export is read back as.
TYPES = {"spec": "string", "kind": "string", "dataset": "string", "sender": "string",
         "receiver": "string", "control": "string", "sender_point": "string",
         "sender_index": "Int64", "receiver_point": "string", "receiver_index": "Int64",
         "stitch": "string", "objective": "string", "seed": "Int64", "metric": "string",
         "value": "float64", "low": "float64", "high": "float64", "n": "Int64",
         "interval": "string", "converged": "boolean", "stop_reason": "string",
         "p_value": "float64", "fw_p_value": "float64", "key": "string"}


def long_table(store: Store, spec: str | None = None) -> pd.DataFrame:
    """Every done or unstitchable stitching cell's metrics and every similarity cell's
    measure, in the columns of COLUMNS."""
    sweeps = store.sweeps()
    how = {row.spec: _how(row) for row in sweeps.itertuples()}
    parts = [_stitch_rows(store.cells(spec), how), _similarity_rows(store.similarities(spec),
                                                                       how)]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise PlatoError(f"{store.path} holds no cells" + (f" for spec '{spec}'" if spec
                                                            else "") + " to export")
    table = typed(pd.concat(parts, ignore_index=True)[list(COLUMNS)])
    return table.sort_values(["spec", "kind", "sender", "receiver", "control", "sender_index",
                              "receiver_index", "metric", "seed"],
                             na_position="first").reset_index(drop=True)


def typed(table: pd.DataFrame) -> pd.DataFrame:
    """The table in the schema's column types (TYPES)."""
    table = table.copy()
    for column, kind in TYPES.items():
        values = table[column]
        if kind in ("string", "boolean"):
            values = values.astype(object).where(values.notna(), None)
        table[column] = values.astype(kind)
    return table


def _how(row) -> dict:
    """A spec's dataset, stitch type and objective, from its stored identity."""
    identity = json.loads(row.identity) if isinstance(row.identity, str) else {}
    recipe = identity.get("recipe") or {}
    return {"dataset": row.dataset, "stitch": identity.get("stitch"),
            "objective": recipe.get("objective")}


def _stitch_rows(cells: pd.DataFrame, how: dict) -> pd.DataFrame:
    cells = cells[cells.status != "failed"]
    if cells.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    metrics = [m for m in METRICS if m in cells.columns and cells[m].notna().any()]
    reasons = [(json.loads(r) if isinstance(r, str) else {}).get("stop_reason")
               for r in cells["result"]]
    base = cells[PLACE + ["seed", "key", "test_examples", "accuracy_low", "accuracy_high",
                          "converged"]].assign(stop_reason=reasons)
    long = base.merge(cells[["key", *metrics]].melt(id_vars="key", var_name="metric",
                                                    value_name="value"), on="key")
    long = long[long.value.notna() | (long.metric == "stitched_accuracy")]  # NaN: unstitchable
    accuracy = long.metric == "stitched_accuracy"
    long["low"] = long.accuracy_low.where(accuracy)
    long["high"] = long.accuracy_high.where(accuracy)
    long["n"] = long.test_examples.where(accuracy)
    long["interval"] = np.where(accuracy & long.low.notna(), "wilson (test examples)", None)
    long["converged"] = long.converged.map(lambda v: None if pd.isna(v) else bool(v))
    long["kind"], long["p_value"], long["fw_p_value"] = "stitch", np.nan, np.nan
    return _with_how(long, how)


def _similarity_rows(sims: pd.DataFrame, how: dict) -> pd.DataFrame:
    if sims.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    long = sims.rename(columns={"measure": "metric", "examples": "n"}).assign(
        kind="similarity", seed=np.nan, low=np.nan, high=np.nan, interval=None,
        converged=None, stop_reason=None)
    return _with_how(long, how)


def _with_how(long: pd.DataFrame, how: dict) -> pd.DataFrame:
    for field in ("dataset", "stitch", "objective"):
        long[field] = long.spec.map(lambda s, f=field: how.get(s, {}).get(f))
    if (long.kind == "similarity").any():  # stitch and objective name a stitching cell
        long.loc[long.kind == "similarity", ["stitch", "objective"]] = None
    return long


def export(store_path: str | Path, out: str | Path, fmt: str,
           spec: str | None = None) -> tuple[Path, int]:
    """Write the store's long table to `out` in `fmt`: (the path, its rows)."""
    if fmt not in FORMATS:
        raise PlatoError(f"format '{fmt}' is not one of {', '.join(FORMATS)}")
    with Store(store_path, create=False) as store:
        table = long_table(store, spec)
    out = Path(out)
    if fmt == "csv":
        write_file(out, table.to_csv(index=False))
    elif fmt == "json":  # the json module writes each float exactly (pandas rounds to 10)
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        write_file(out, json.dumps(records, indent=1, allow_nan=False))
    else:
        import io

        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_file(out, buffer.getvalue())
    return out, len(table)


def read_export(path: str | Path) -> pd.DataFrame:
    """An export read back with the schema's types (what the round-trip tests compare)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix == ".json":
        table = pd.DataFrame(json.loads(path.read_text()), columns=list(COLUMNS))
    else:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return typed(table)
