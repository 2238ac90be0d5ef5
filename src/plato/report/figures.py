"""Interactive figures of a store (Plotly): a table as a heatmap whose hover shows each cell's
value, its 95% interval, its number of seeds and whether its fits converged. For Jupyter
(`plato.report.figure(store, ...)` displays itself in a notebook) and for the interactive
report, which draws the same figures.

Why Plotly: the field's notebooks use it; its figures are plain JSON plus one embedded script,
so a page of them works offline as one file, and hover and click need no server.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from plato.sweep.store import Store
from plato.sweep.tables import interval_tables, load_for_metric, stat_table


@dataclass
class TableView:
    """One heatmap's numbers, (sender points x receiver points) each: the value shown, its 95%
    interval, the seeds behind it, the share of its fits that converged, and (similarity
    measures with a permutation null) its p-value. NaN where the store has none."""
    sender: str
    receiver: str
    title: str
    metric: str
    value: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    n: pd.DataFrame
    converged: pd.DataFrame
    p_value: pd.DataFrame


def table_view(cells: pd.DataFrame, sender: str, receiver: str, control: str,
               metric: str) -> TableView:
    """The view of one stored table: the mean over seeds and its interval
    (plato.sweep.tables.cell_interval)."""
    value = stat_table(cells, sender, receiver, control, metric)
    low, high = (end.reindex_like(value) for end in
                 interval_tables(cells, sender, receiver, control, metric))
    n = stat_table(cells, sender, receiver, control, metric, "n").reindex_like(value)
    converged = (stat_table(cells, sender, receiver, control, "converged").reindex_like(value)
                 if "converged" in cells.columns and cells.converged.notna().any()
                 else value * np.nan)
    p_column = next((c for c in (f"{metric}_fw_p", f"{metric}_p") if c in cells.columns
                     and cells[c].notna().any()), None)
    p_value = (stat_table(cells, sender, receiver, control, p_column).reindex_like(value)
               if p_column else value * np.nan)
    return TableView(sender, receiver, f"{sender} -> {receiver} ({control}): {metric}",
                     metric, value, low, high, n, converged, p_value)


def plotly_figure(view: TableView):
    """The view as a plotly.graph_objects.Figure. Names are escaped: Plotly renders a subset
    of HTML in labels, so a network called `<b>` must reach it as `&lt;b&gt;`."""
    import plotly.graph_objects as go

    def text(s) -> str:
        return html.escape(str(s))

    custom = np.stack([view.low.to_numpy(), view.high.to_numpy(), view.n.to_numpy(),
                       view.converged.to_numpy(), view.p_value.to_numpy()], axis=-1)  # (S,R,5)
    lines = ["%{y} -> %{x}", text(view.metric) + " %{z:.4f}"]
    if np.isfinite(custom[..., 0]).any():
        lines.append("95% interval [%{customdata[0]:.4f}, %{customdata[1]:.4f}]")
    lines.append("seeds: %{customdata[2]}")
    if np.isfinite(custom[..., 3]).any():
        lines.append("converged %{customdata[3]:.0%}")
    if np.isfinite(custom[..., 4]).any():
        lines.append("p %{customdata[4]:.4f} (permutation null)")
    heat = go.Heatmap(
        z=view.value.to_numpy(), x=[text(c) for c in view.value.columns],
        y=[text(i) for i in view.value.index], customdata=custom, colorscale="Viridis",
        colorbar={"title": {"text": text(view.metric)}}, hoverongaps=False,
        hovertemplate="<br>".join(lines) + "<extra></extra>")
    fig = go.Figure(heat)
    fig.update_layout(title={"text": text(view.title)},
                      xaxis={"title": {"text": f"{text(view.receiver)} (receiver)"},
                             "type": "category"},
                      yaxis={"title": {"text": f"{text(view.sender)} (sender)"},
                             "type": "category", "autorange": "reversed"},
                      margin={"l": 90, "r": 20, "t": 60, "b": 80})
    return fig


def figure(store: Store | str | Path, sender: str, receiver: str,
           control: str = "trained->trained", metric: str = "stitched_accuracy",
           spec: str | None = None, all_specs: bool = False):
    """The (sender points x receiver points) table of `metric` (mean over seeds) as a
    plotly.graph_objects.Figure; each cell's hover: the value, its 95% interval (low, high:
    plato.sweep.tables), n seeds, and the share of its fits that converged."""
    if not isinstance(store, Store):
        with Store(store, create=False) as opened:
            return figure(opened, sender, receiver, control, metric, spec, all_specs)
    chosen = store.one_spec(spec, all_specs)
    cells = load_for_metric(store, chosen, metric)
    return plotly_figure(table_view(cells, sender, receiver, control, metric))
