"""The tables a user asks of a store (`plato table`, or from Python): which tables (pairs,
control, a compression level), which statistic, debiased against a control, with intervals and
the latest stitchable receiver point. Each comes as a `TableView`; `to_dict()` is its JSON.

    views = table_views("runs/demo/results.sqlite", TableQuery(pair=("resnet", "cnn"), ci=True))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from plato.errors import PlatoError
from plato.jsonable import jsonable

if TYPE_CHECKING:  # (imported where used: the CLI reads TableQuery's defaults at start)
    import pandas as pd

DEBIASED = ("diff", "normalized")


@dataclass
class TableQuery:
    spec: str | None = None  # the store's spec (needed when it holds several)
    all_specs: bool = False  # pool every spec of the store instead
    pair: tuple[str, str] | None = None  # sender, receiver (default: every pair)
    control: str = "trained->trained"
    metric: str = "stitched_accuracy"  # a metric of the cells or a similarity measure
    stat: str = "mean"  # mean, std or n over seeds
    debiased: str | None = None  # diff or normalized: trained minus `control`
    ci: bool = False  # each cell's 95% interval
    latest: bool = False  # also the latest stitchable receiver point
    threshold: float = 0.9  # of the receiver's accuracy, for `latest`
    level: float | None = None  # a compression axis's level: only its networks' tables

    def __post_init__(self) -> None:
        if self.debiased is not None and self.debiased not in DEBIASED:
            raise PlatoError(f"--debiased must be diff or normalized, got '{self.debiased}'")


@dataclass
class TableView:
    """One table: rows = sender points, columns = receiver points."""

    spec: str | None
    sender: str
    receiver: str
    control: str
    metric: str
    stat: str  # mean | std | n | debiased-diff | debiased-normalized
    title: str
    values: pd.DataFrame
    low: pd.DataFrame | None = None  # the 95% interval, where asked for
    high: pd.DataFrame | None = None
    latest: pd.Series | None = None  # the latest stitchable receiver point per sender point
    interval: str | None = None  # what the intervals are over (their kind, seeds, examples)
    notes: list[str] = field(default_factory=list)  # what the reader must know
    scores: dict[str, dict] | None = None  # model-level scores (plato.sweep.scores)

    def to_dict(self) -> dict:
        """The table as JSON: NaN as null."""
        out = {"spec": self.spec, "sender": self.sender, "receiver": self.receiver,
               "control": self.control, "metric": self.metric, "stat": self.stat,
               "rows": list(self.values.index), "columns": list(self.values.columns),
               "values": jsonable(self.values.astype(float))}
        if self.low is not None:
            out["low"], out["high"] = (jsonable(self.low.astype(float)),
                                       jsonable(self.high.astype(float)))
            out["interval"] = self.interval
        if self.latest is not None:
            out["latest_stitchable"] = jsonable(self.latest.to_dict())
        if self.scores is not None:
            out["scores"] = jsonable(self.scores)
        return out


@dataclass
class TableViews:
    spec: str | None  # None: every spec of the store, pooled
    views: list[TableView]
    cells: pd.DataFrame  # every cell the views read (plato table --csv exports them)

    def tidy(self) -> pd.DataFrame:
        """Every aggregated cell in long form (one row per cell and metric)."""
        from plato.sweep.tables import tidy

        return tidy(self.cells)


def table_views(store_path: str | Path, query: TableQuery) -> TableViews:
    """The tables `query` asks of the store at `store_path`."""
    from plato.sweep import tables as T
    from plato.sweep.store import Store

    with Store(store_path, create=False) as db:
        spec = db.one_spec(query.spec, query.all_specs)
        cells = T.load_for_metric(db, spec, query.metric)
        networks = db.networks(spec)
        stored_scores = db.model_scores(spec)
    pair, at_level = query.pair, None
    if query.level is not None:
        at_level = T.networks_at_level(networks, query.level)
        if not at_level:
            levels = sorted(T.compressed_networks(networks).level.dropna().unique())
            raise PlatoError(f"no compressed network at level {query.level:g}: the levels of "
                             "this store's compression axes are "
                             f"{', '.join(f'{v:g}' for v in levels) or '(none)'}")
        if pair:
            pair = tuple(at_level.get(n, n) for n in pair)
    chosen = T.select_tables(cells, pair, query.control, bool(query.debiased))
    if at_level is not None:
        chosen = [k for k in chosen if {k[0], k[1]} & set(at_level.values())]
        if not chosen:
            raise PlatoError(f"no table of {', '.join(at_level.values())} (level "
                             f"{query.level:g}) for control {query.control}")
    return TableViews(spec, [_view(cells, spec, s, r, c, query, stored_scores)
                             for s, r, c in chosen], cells)


def _view(cells: pd.DataFrame, spec: str | None, s: str, r: str, c: str,
          query: TableQuery, stored_scores: pd.DataFrame) -> TableView:
    from plato.sweep import tables as T
    from plato.sweep.scores import model_scores

    metric, debiased = query.metric, query.debiased
    if debiased:
        values = T.debiased_table(cells, s, r, metric, query.control, debiased == "normalized")
        title = f"{s} -> {r}: {metric}, debiased ({debiased}) against {query.control}"
    else:
        values = T.stat_table(cells, s, r, c, metric, query.stat)
        title = f"{s} -> {r} ({c}): {metric} {query.stat}"
    view = TableView(spec, s, r, c, metric, "debiased-" + debiased if debiased else query.stat,
                     title, values)
    if query.ci:
        view.interval = T.interval_description(
            cells, s, r, "trained->trained" if debiased else c, metric, bool(debiased))
        if debiased == "normalized":
            view.low = view.high = values * float("nan")
            view.title += " (no interval: the denominator is an estimate too; use diff)"
        elif debiased:
            view.low, view.high = T.debiased_interval(cells, s, r, query.control)
        else:
            view.low = T.stat_table(cells, s, r, c, metric, "low")
            view.high = T.stat_table(cells, s, r, c, metric, "high")
        if (values.notna() & view.low.isna()).to_numpy().any():
            view.notes.append("[n/a]: no interval: one seed of a metric other than stitched "
                              "accuracy, or cells stored before per-example outcomes were "
                              "kept")
    if query.latest and not debiased:
        view.latest = T.latest_table(cells, s, r, c, threshold=query.threshold)
    view.scores = model_scores(cells, values, s, r, c, query, stored_scores)
    return view

