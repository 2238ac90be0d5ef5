"""The result store: one SQLite file (WAL mode) per run.

Every finished cell is one row, written in one transaction, so a process killed at any moment
(SIGKILL included) loses at most the cells in flight and never leaves a half-written row.
Only the driver process writes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from plato.errors import PlatoError, fault_message

METRICS = ("stitched_accuracy", "sender_accuracy", "receiver_accuracy", "normalized_accuracy",
           "stitched_loss", "stitch_loss", "activation_mse", "activation_cka",
           "receiver_distance", "receiver_own_distance", "saliency_agreement",
           "saliency_agreement_sender", "deletion_area")
# A result's fields with columns of their own.
COLUMNS = (*METRICS, "stitch_parameters", "epochs", "seconds", "test_examples", "accuracy_low",
           "accuracy_high", "steps", "examples_seen", "converged")
# Columns added since the first stores: an older store gains them (NULL in its older cells).
ADDED_COLUMNS = {"cells": {"test_examples": "INTEGER", "accuracy_low": "REAL",
                           "accuracy_high": "REAL", "correct": "BLOB", "steps": "INTEGER",
                           "examples_seen": "INTEGER", "converged": "INTEGER",
                           "receiver_distance": "REAL", "receiver_own_distance": "REAL",
                           "saliency_agreement": "REAL", "saliency_agreement_sender": "REAL",
                           "deletion_area": "REAL"},
                 "similarities": {"null_mean": "REAL", "calibrated": "REAL", "p_value": "REAL",
                                  "fw_p_value": "REAL", "fw_threshold": "REAL",
                                  "rescaled": "REAL",
                                  "permutations": "INTEGER"},
                 "sweeps": {"identity": "TEXT"},  # plato.sweep.provenance
                 # compression: JSON, how a compressed one was made; trained_on: its data
                 "networks": {"compression": "TEXT", "trained_on": "TEXT"}}
# A result's fields the job's own columns hold already (the names, points, seed).
JOB_FIELDS = ("sender", "receiver", "sender_point", "receiver_point", "sender_point_index",
              "receiver_point_index", "seed")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    sender TEXT NOT NULL,
    receiver TEXT NOT NULL,
    control TEXT NOT NULL,
    seed INTEGER NOT NULL,
    sender_point TEXT NOT NULL,
    sender_index INTEGER NOT NULL,
    receiver_point TEXT NOT NULL,
    receiver_index INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed', 'unstitchable')),
    reason TEXT,
    {", ".join(f"{m} REAL" for m in METRICS)},
    stitch_parameters INTEGER,
    epochs INTEGER,
    seconds REAL,
    test_examples INTEGER,
    accuracy_low REAL,  -- 95% interval of stitched_accuracy over the test examples
    accuracy_high REAL,
    correct BLOB,  -- which test examples the stitch got right: numpy.packbits, split order
    steps INTEGER,  -- SGD steps the stitch took
    examples_seen INTEGER,
    converged INTEGER,  -- 1: the held-out rule stopped it, 0: max_steps did, NULL: fixed budget
    result TEXT,  -- the result's fields that have no column of their own, as JSON
    stitch_file TEXT,
    started REAL,
    finished REAL,
    host TEXT
);
CREATE INDEX IF NOT EXISTS cells_by_table ON cells (spec, sender, receiver, control);
CREATE TABLE IF NOT EXISTS networks (
    spec TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    model TEXT NOT NULL,
    identity TEXT NOT NULL,
    checkpoint TEXT,
    init_seed INTEGER,
    accuracy REAL,
    PRIMARY KEY (spec, name, role)
);
CREATE TABLE IF NOT EXISTS similarities (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    sender TEXT NOT NULL,
    receiver TEXT NOT NULL,
    control TEXT NOT NULL,
    measure TEXT NOT NULL,
    sender_point TEXT NOT NULL,
    sender_index INTEGER NOT NULL,
    receiver_point TEXT NOT NULL,
    receiver_index INTEGER NOT NULL,
    value REAL,
    reason TEXT,
    examples INTEGER,
    layout TEXT,
    null_mean REAL,  -- the permutation null's mean, when asked for (similarity.permutations)
    calibrated REAL,  -- the value on the null's examples minus null_mean
    p_value REAL,  -- (1 + shuffles at least as similar) / (permutations + 1)
    fw_p_value REAL,  -- family-wise: (1 + shuffles whose most similar cell is) / (perm. + 1)
    fw_threshold REAL,  -- the 95% quantile of the shuffles' most similar cell (the table's)
    rescaled REAL,  -- (value - null_mean) / (identity - null_mean): 0 at the null, 1 identical
    permutations INTEGER,
    finished REAL
);
CREATE INDEX IF NOT EXISTS similarities_by_table ON similarities (spec, sender, receiver,
                                                                  control, measure);
CREATE TABLE IF NOT EXISTS model_scores (  -- one number per similarity table (with its null)
    key TEXT PRIMARY KEY,  -- the table's cells' keys and the score
    spec TEXT NOT NULL,
    sender TEXT NOT NULL,
    receiver TEXT NOT NULL,
    control TEXT NOT NULL,
    measure TEXT NOT NULL,
    score TEXT NOT NULL,  -- max | depth_mean (plato.similarity.model_level)
    value REAL,  -- on the null's examples
    bias_corrected REAL,  -- the jackknife's estimate, the interval's centre
    low REAL,  -- 95% delete-a-group jackknife interval over the examples
    high REAL,
    null_mean REAL,  -- the score's mean over the shuffles
    p_value REAL,  -- (1 + shuffles at least as similar) / (permutations + 1)
    calibrated REAL,  -- 0 at the null's mean, 1 identical
    calibrated_low REAL,
    calibrated_high REAL,
    cells INTEGER,  -- the cells it is taken over
    row_point TEXT,  -- max: the most similar cell
    column_point TEXT,
    examples INTEGER,
    permutations INTEGER,
    finished REAL
);
CREATE TABLE IF NOT EXISTS interpretations (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    kind TEXT NOT NULL,  -- 'invert' (one network's cut point) or 'saliency' (one stitched cell)
    network TEXT NOT NULL,  -- invert: the network; saliency: the sender
    role TEXT NOT NULL,  -- invert: trained or random; saliency: the cell's control
    point TEXT NOT NULL,  -- the (sender's) cut point
    point_index INTEGER NOT NULL,
    receiver TEXT,  -- saliency: the receiver and its cut point
    receiver_point TEXT,
    receiver_index INTEGER,
    seed INTEGER,
    result TEXT NOT NULL,  -- the measured numbers, as JSON
    file TEXT,  -- the pictures' tensors (safetensors, uint8), relative to the run folder
    finished REAL
);
CREATE INDEX IF NOT EXISTS interpretations_by_kind ON interpretations (spec, kind);
CREATE TABLE IF NOT EXISTS sweeps (
    spec TEXT PRIMARY KEY,
    source TEXT,
    dataset TEXT,
    granularity TEXT,
    created REAL,
    updated REAL,
    plato_version TEXT
);
"""


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _add_columns(db: sqlite3.Connection) -> None:
    """The columns added since a store was written (ADDED_COLUMNS)."""
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _writable(path: Path) -> bool:
    """Whether this process may write the store and create its WAL beside it."""
    return all(os.access(p, os.W_OK, effective_ids=os.access in os.supports_effective_ids)
               for p in (path, path.parent))


def _snapshot(path: Path) -> sqlite3.Connection:
    """A store on read-only media (a copy of a finished store on a DVD, a read-only share):
    read as immutable (SQLite creates no WAL or lock files beside it) into memory, where the
    columns added since it was written are added."""
    try:
        source = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1",
                                 uri=True)
        db = sqlite3.connect(":memory:", isolation_level=None)
        source.backup(db)
        source.close()
        db.executescript(SCHEMA)
        _add_columns(db)
    except sqlite3.DatabaseError as e:
        raise PlatoError(f"{path} is not a usable result store ({e})") from None
    return db


class Store:
    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise PlatoError(f"result store {self.path} does not exist: run `plato sweep` first")
        self.host = socket.gethostname()
        if not create and not _writable(self.path):
            self.db = _snapshot(self.path)  # read-only media: read it as it is, change nothing
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: safe against crashes
            self.db.executescript(SCHEMA)
            _add_columns(self.db)
        except sqlite3.OperationalError as e:  # the machine refused (full, read-only...)
            raise PlatoError(f"cannot use the result store {self.path}: "
                             f"{fault_message(e)}") from None
        except sqlite3.DatabaseError as e:  # the file is not a store
            raise PlatoError(f"{self.path} is not a usable result store ({e})") from None

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> None:
        """Write the WAL's pages into the store file and empty the WAL, so that the file alone
        holds everything (copied elsewhere, it is the whole store). Where a reader holds an
        old snapshot, the pages it needs stay in the WAL: done by the next one."""
        if self.db.in_transaction:
            return
        self.db.execute("PRAGMA busy_timeout = 2000")
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # busy: the automatic checkpoints will do it
        finally:
            self.db.execute("PRAGMA busy_timeout = 60000")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def record_sweep(self, spec: str, source: str, dataset: str, granularity: str,
                     identity: dict | None = None) -> None:
        from plato import __version__

        now = time.time()
        self.db.execute(
            "INSERT INTO sweeps (spec, source, dataset, granularity, created, updated, "
            "plato_version, identity) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(spec) DO "
            "UPDATE SET source=excluded.source, dataset=excluded.dataset, "
            "granularity=excluded.granularity, updated=excluded.updated, "
            "plato_version=excluded.plato_version, "
            "identity=COALESCE(excluded.identity, sweeps.identity)",
            (spec, source, dataset, granularity, now, now, __version__,
             None if identity is None else json.dumps(identity, sort_keys=True)),
        )

    def sweep_identity(self, spec: str) -> dict | None:
        """The identity the spec `spec` was last run with (None: never, or by a Plato that
        did not record it)."""
        row = self.db.execute("SELECT identity FROM sweeps WHERE spec = ?", (spec,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def record_network(self, spec: str, name: str, role: str, model: str, identity: str,
                       checkpoint: str | None, init_seed: int | None, accuracy: float,
                       compression: dict | None = None, trained_on: str | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO networks (spec, name, role, model, identity, checkpoint, "
            "init_seed, accuracy, compression, trained_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (spec, name, role, model, identity, checkpoint, init_seed, accuracy,
             None if compression is None else json.dumps(compression, sort_keys=True),
             trained_on))

    def record_cell(self, job, status: str, *, result: dict | None = None,
                    reason: str | None = None, started: float, stitch_file: str | None = None,
                    host: str | None = None, correct: bytes | None = None) -> None:
        r = result or {}
        rest = {k: v for k, v in r.items() if k not in COLUMNS and k not in JOB_FIELDS}
        row = {
            "key": job.key, "spec": job.spec, "sender": job.sender, "receiver": job.receiver,
            "control": job.control, "seed": job.seed, "sender_point": job.sender_point,
            "sender_index": job.sender_index, "receiver_point": job.receiver_point,
            "receiver_index": job.receiver_index, "status": status, "reason": reason,
            **{c: _finite(r.get(c)) for c in COLUMNS},
            "correct": correct, "result": json.dumps(rest) if rest else None,
            "stitch_file": stitch_file, "started": started, "finished": time.time(),
            "host": host or self.host,
        }
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        # One statement, one implicit transaction: the row is there whole or not at all.
        self.db.execute(f"INSERT OR REPLACE INTO cells ({cols}) VALUES ({marks})",
                        tuple(row.values()))

    def record_similarities(self, rows: list[dict], scores: list[dict] = ()) -> None:
        """A whole similarity table (one measure, one pair and control) and its model-level
        scores in one transaction."""
        if not rows:
            return
        now = time.time()
        with self.db:  # explicit transaction: all of the table or none of it
            self.db.execute("BEGIN")
            for table, records in (("similarities", rows), ("model_scores", scores)):
                if records:
                    cols = list(records[0])
                    self.db.executemany(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}, finished) "
                        f"VALUES ({', '.join('?' for _ in cols)}, ?)",
                        [tuple(_finite(r[c]) for c in cols) + (now,) for r in records])

    def record_interpretation(self, key: str, spec: str, kind: str, network: str, role: str,
                              point: str, point_index: int, result: dict, *,
                              receiver: str | None = None, receiver_point: str | None = None,
                              receiver_index: int | None = None, seed: int | None = None,
                              file: str | None = None) -> None:
        """One reconstruction or saliency result, in one statement (whole or not at all)."""
        clean = {k: _finite(v) for k, v in result.items()}
        self.db.execute(
            "INSERT OR REPLACE INTO interpretations (key, spec, kind, network, role, point, "
            "point_index, receiver, receiver_point, receiver_index, seed, result, file, "
            "finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, spec, kind, network, role, point, point_index, receiver, receiver_point,
             receiver_index, seed, json.dumps(clean), file, time.time()))

    # -- reading ------------------------------------------------------------------------------

    def interpretation_keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM interpretations")}

    def interpretations(self, kind: str, spec: str | None = None) -> pd.DataFrame:
        """One row per stored result of `kind`, its numbers as columns (NaN where absent)."""
        query = "SELECT * FROM interpretations WHERE kind = ?" + (" AND spec = ?" if spec else "")
        rows = pd.read_sql_query(query, self.db, params=(kind, spec) if spec else (kind,))
        numbers = pd.DataFrame([json.loads(r) for r in rows["result"]], index=rows.index)
        return pd.concat([rows.drop(columns="result"), numbers], axis=1)

    def similarity_keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM similarities")}

    def similarities(self, spec: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM similarities" + (" WHERE spec = ?" if spec else "")
        return pd.read_sql_query(query, self.db, params=(spec,) if spec else None)

    def model_scores(self, spec: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM model_scores" + (" WHERE spec = ?" if spec else "")
        return pd.read_sql_query(query, self.db, params=(spec,) if spec else None)

    def statuses(self, keys: list[str] | None = None) -> dict[str, str]:
        rows = self.db.execute("SELECT key, status FROM cells").fetchall()
        found = dict(rows)
        return found if keys is None else {k: found[k] for k in keys if k in found}

    def cell_specs(self, keys: list[str]) -> dict[str, str]:
        """The spec name each of `keys` that is stored was computed for."""
        found = dict(self.db.execute("SELECT key, spec FROM cells").fetchall())
        return {k: found[k] for k in keys if k in found}

    def cells(self, spec: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM cells" + (" WHERE spec = ?" if spec else "")
        return pd.read_sql_query(query, self.db, params=(spec,) if spec else None)

    def networks(self, spec: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM networks" + (" WHERE spec = ?" if spec else "")
        return pd.read_sql_query(query, self.db, params=(spec,) if spec else None)

    def one_spec(self, spec: str | None, all_specs: bool = False) -> str | None:
        """The spec whose cells a table, report or check reads: `spec` (checked to be here);
        the store's only spec; or, with `all_specs`, None (every spec pooled). Tables never
        pool the cells of different specs unless asked: they are different experiments."""
        names = [row[0] for row in self.db.execute(
            "SELECT spec FROM sweeps UNION SELECT spec FROM cells "
            "UNION SELECT spec FROM similarities UNION SELECT spec FROM interpretations "
            "ORDER BY 1")]
        # a spec's autoencoder twin (interpret.ood: NAME-match) belongs to its report
        names = [n for n in names if not (n.endswith("-match")
                                          and n.removesuffix("-match") in names)] \
            if spec is None else names
        if spec is not None:
            if spec not in names:
                raise PlatoError(f"{self.path} holds no spec '{spec}'; its specs: "
                                 f"{', '.join(names) or 'none'}")
            return spec
        if all_specs or len(names) <= 1:
            return names[0] if len(names) == 1 else None
        raise PlatoError(f"{self.path} holds {len(names)} specs ({', '.join(names)}): choose "
                         "one with --spec, or pool them with --all-specs")

    def sweeps(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM sweeps ORDER BY created", self.db)

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
