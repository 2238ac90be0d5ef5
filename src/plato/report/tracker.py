"""A store logged to MLflow (`--mlflow URI` on `plato sweep` and `plato export`; the `mlflow`
extra): one MLflow run per spec, holding

    params     the spec's dataset, stitch, objective, networks and cells
    metrics    every cell's every metric, keyed METRIC/SENDER.POINT/RECEIVER.POINT/CONTROL,
               one step per stitch seed (a similarity cell: step 0); each check's value
    tags       each check's verdict (check.NAME: pass, FAIL or n/a), the store's path
    artifacts  the long table (export.parquet: every value exactly, names unaltered),
               checks.json and the spec's interactive report (report.html)

MLflow's keys allow letters, digits and `_ - . space /`: other characters of a name become
`_` in a key, followed by `~` and a hash of the original names so that keys stay distinct (the
parquet artifact keeps the names as they are). A folder or `file:` URI is
MLflow's file store, which MLflow keeps in maintenance mode behind MLFLOW_ALLOW_FILE_STORE;
naming one is the opt-in, so Plato sets it for that call.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

from plato.errors import PlatoError
from plato.sweep.checks import load_checks
from plato.sweep.export import long_table
from plato.sweep.store import Store

EXPERIMENT = "plato"
BATCH = 1000  # MLflow takes at most 1,000 metrics per log_batch
KEY_LENGTH = 250  # and keys of at most 250 characters
_UNSAFE = re.compile(r"[^\w.\- ]")


def key_part(name: str) -> str:
    """A name as one segment of an MLflow key (no `/`, no `.` or `..` alone)."""
    part = _UNSAFE.sub("_", str(name))
    return "_" if part in ("", ".", "..") else part


def metric_key(row) -> str:
    """METRIC/SENDER.POINT/RECEIVER.POINT/CONTROL. Where a name held characters MLflow keys
    refuse (made `_`) or the key is over-long, `~` and a hash of the original follow, so two
    cells never share a key (their values would merge into one history)."""
    parts = (str(row.metric), f"{row.sender}.{row.sender_point}",
             f"{row.receiver}.{row.receiver_point}", str(row.control).replace("->", "-"))
    original, key = "/".join(parts), "/".join(key_part(p) for p in parts)
    if key != original or len(key) > KEY_LENGTH:
        digest = hashlib.sha256(original.encode()).hexdigest()[:12]
        key = key[:KEY_LENGTH - 13] + "~" + digest
    return key


def mlflow_module():
    try:
        import mlflow
    except ImportError:
        raise PlatoError("--mlflow needs MLflow: pip install 'plato-stitch[mlflow]' (or "
                         "mlflow itself)") from None
    return mlflow


def tracking_uri(uri: str) -> str:
    """A folder as its file: URI (MLflow's file store, opted into); other URIs as given."""
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        uri = Path(uri).expanduser().resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def log_to_mlflow(store_path: str | Path, uri: str, spec: str | None = None,
                  experiment: str = EXPERIMENT) -> list[str]:
    """Log the store's specs (or `spec`) to the MLflow tracking server or store at `uri`, one
    run each; returns the runs' ids."""
    mlflow = mlflow_module()
    from mlflow.exceptions import MlflowException

    with Store(store_path, create=False) as store:
        table = long_table(store, spec)
        sweeps = store.sweeps().set_index("spec")
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri(uri))
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        return [_log_spec(client, experiment_id, store_path, str(name), rows, sweeps)
                for name, rows in table.groupby("spec", sort=True)]
    except MlflowException as e:
        first = str(getattr(e, "message", e)).split(". ")[0]
        raise PlatoError(f"MLflow at {uri} refused the log: {first}") from None


def _log_spec(client, experiment_id: str, store_path: str | Path, name: str,
              rows: pd.DataFrame, sweeps: pd.DataFrame) -> str:
    """One spec as one MLflow run (marked FAILED if logging stops part way)."""
    from mlflow.entities import RunTag

    run = client.create_run(experiment_id, run_name=name, tags={
        "plato.spec": name, "plato.store": str(Path(store_path).resolve())})
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory() as folder:
            checks = _artifact_files(Path(folder), store_path, name, rows)
            verdicts = [RunTag(f"check.{key_part(c.name)}",
                               {True: "pass", False: "FAIL", None: "n/a"}[c.passed])
                        for c in checks]
            client.log_batch(run_id, params=_params(name, rows, sweeps), tags=verdicts)
            metrics = _metrics(rows, checks)
            for start in range(0, len(metrics), BATCH):
                client.log_batch(run_id, metrics=metrics[start:start + BATCH])
            client.log_artifacts(run_id, folder)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _params(name: str, rows: pd.DataFrame, sweeps: pd.DataFrame) -> list:
    from mlflow.entities import Param

    def first(column: pd.Series):
        known = column.dropna()
        return known.iloc[0] if len(known) else None

    stitching = rows[rows.kind == "stitch"]
    values = {
        "dataset": first(rows.dataset), "stitch": first(stitching.stitch),
        "objective": first(stitching.objective),
        "networks": ", ".join(sorted(set(rows.sender) | set(rows.receiver))),
        "stitching_cells": int(stitching.key.nunique()),
        "similarity_cells": int((rows.kind == "similarity").sum()),
        "plato_version": sweeps.plato_version.get(name) if name in sweeps.index else None,
    }
    return [Param(k, str(v)[:6000]) for k, v in values.items() if v is not None]


def _metrics(rows: pd.DataFrame, checks: list) -> list:
    """Every value of the rows, one step per seed, and each computed check's value."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = rows[rows.value.notna()]
    metrics = [Metric(metric_key(r), float(r.value), now, 0 if pd.isna(r.seed) else int(r.seed))
               for r in values.itertuples(index=False)]
    metrics += [Metric(f"check/{key_part(c.name)}", float(c.value), now, 0)
                for c in checks if c.value is not None]
    return metrics


def _artifact_files(folder: Path, store_path: str | Path, name: str,
                    rows: pd.DataFrame) -> list:
    """The long table, the spec's interactive report (its pictures are inlined: the page is
    the one file) and its checks.json, written into `folder`; returns the checks the report
    computed (the run's tags and check metrics: computed once)."""
    from plato.report.html import write_report

    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    (folder / "export.parquet").write_bytes(buffer.getvalue())
    with tempfile.TemporaryDirectory() as scratch:  # the report's heatmaps/ stay out
        page = write_report(store_path, scratch, spec=name)
        for written in (page, page.parent / "checks.json"):
            (folder / written.name).write_bytes(written.read_bytes())
    return load_checks(folder / "checks.json")
