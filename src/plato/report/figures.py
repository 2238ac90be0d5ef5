"""Interactive figures of a store (Plotly): a table as a heatmap whose hover shows each cell's
value, its 95% interval, its number of seeds and whether its fits converged. For Jupyter
(`plato.report.figure(store, ...)` displays itself in a notebook) and for the interactive
report.

Why Plotly: the field's notebooks use it; its figures are plain JSON plus one embedded script,
so a page of them works offline as one file, and hover and click need no server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plato.sweep.store import Store
from plato.sweep.tables import load_for_metric, stat_table


def figure(store: Store | str | Path, sender: str, receiver: str,
           control: str = "trained->trained", metric: str = "stitched_accuracy",
           spec: str | None = None, all_specs: bool = False):
    """The (sender points x receiver points) table of `metric` (mean over seeds) as a
    plotly.graph_objects.Figure; each cell's hover: the value, its 95% interval (low, high:
    plato.sweep.tables), n seeds, and the share of its fits that converged."""
    import plotly.graph_objects as go

    if not isinstance(store, Store):
        with Store(store, create=False) as opened:
            return figure(opened, sender, receiver, control, metric, spec, all_specs)
    chosen = store.one_spec(spec, all_specs)
    cells = load_for_metric(store, chosen, metric)
    mean = stat_table(cells, sender, receiver, control, metric)
    parts = {stat: stat_table(cells, sender, receiver, control, metric, stat).reindex_like(
        mean) for stat in ("low", "high", "n")}
    converged = (stat_table(cells, sender, receiver, control, "converged").reindex_like(mean)
                 if "converged" in cells.columns and cells.converged.notna().any()
                 else mean * np.nan)
    custom = np.stack([parts["low"].to_numpy(), parts["high"].to_numpy(),
                       parts["n"].to_numpy(), converged.to_numpy()], axis=-1)  # (S, R, 4)
    heat = go.Heatmap(
        z=mean.to_numpy(), x=list(mean.columns), y=list(mean.index), customdata=custom,
        colorscale="Viridis", colorbar={"title": metric},
        hovertemplate=("%{y} -> %{x}<br>" + metric + " %{z:.4f}<br>95% interval "
                       "[%{customdata[0]:.4f}, %{customdata[1]:.4f}]<br>n %{customdata[2]} "
                       "seeds<br>converged %{customdata[3]:.0%}<extra></extra>"))
    fig = go.Figure(heat)
    fig.update_layout(title=f"{sender} -> {receiver} ({control}): {metric}",
                      xaxis_title=f"{receiver} (receiver)", yaxis_title=f"{sender} (sender)",
                      yaxis={"autorange": "reversed"})
    return fig
