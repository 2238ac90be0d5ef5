"""The report's compression section: what each pruned or distilled network is (how it was
made, its parameters, sparsity and accuracy) and, for each compression axis, line plots
against the level: per cut point, the stitched accuracy original -> compressed and
compressed -> original (95% intervals), the similarity measure between the two, and the
compressed network's own accuracy (Wilson 95% interval)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from plato.report.heatmaps import save_figure
from plato.report.page import figure, html_table, slug
from plato.stats import accuracy_interval
from plato.sweep.tables import compressed_networks, receiver_accuracy, stat_table, table_keys

TRAINED = "trained->trained"


def _made(row: pd.Series) -> str:
    """One line: how a compressed network was made."""
    if row["kind"] == "prune":
        tuned = row.get("finetune")
        tuned = f", fine-tuned {tuned['epochs']} epochs" if isinstance(tuned, dict) else ""
        return f"{row['method']} pruning of {row['source']}, amount {row['amount']:g}{tuned}"
    hints = row.get("features") or []
    hinted = f", hints {', '.join(f'{s}->{t}' for s, t in hints)}" if hints else ""
    return (f"{row.get('model', '?')} distilled from {row['source']}, temperature "
            f"{row['temperature']:g}, alpha {row['alpha']:g}{hinted}")


def _summary(comp: pd.DataFrame, sources: dict[str, float]) -> pd.DataFrame:
    rows = []
    for _, row in comp.iterrows():
        params = _first_number(row, "parameters", "student_parameters")
        original = _first_number(row, "original_parameters", "teacher_parameters")
        sparsity = row.get("sparsity")
        rows.append({
            "network": row["name"], "made": _made(row),
            "parameters": (f"{int(params):,} of {int(original):,}"
                           if _number(params) and _number(original) else "?"),
            "zero weights": f"{sparsity:.1%}" if _number(sparsity) else "",
            "accuracy": f"{row['accuracy']:.4f}",
            "source accuracy": (f"{sources[row['source']]:.4f}"
                                if row["source"] in sources else "?")})
    return pd.DataFrame(rows)


def _first_number(row: pd.Series, *names: str):
    return next((row[n] for n in names if n in row and _number(row[n])), None)


def _number(value) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float)
                                                   and math.isnan(value))


def _diagonals(cells: pd.DataFrame, sender: str, receiver: str,
               metric: str = "stitched_accuracy") -> dict[str, tuple[float, float, float]]:
    """point -> (mean, low, high) of the cells point -> point of a pair's trained table
    (empty where the pair has none)."""
    if (sender, receiver, TRAINED) not in table_keys(cells):
        return {}
    mean, low, high = (stat_table(cells, sender, receiver, TRAINED, metric, stat)
                       for stat in ("mean", "low", "high"))
    return {p: (float(mean.loc[p, p]), float(low.loc[p, p]), float(high.loc[p, p]))
            for p in mean.index if p in mean.columns}


def _points(cells: pd.DataFrame, source: str, members: list[str]) -> list[str]:
    """The cut points stitched point -> point between the source and its family, in depth
    order."""
    sel = cells[((cells.sender == source) & cells.receiver.isin(members))
                | (cells.sender.isin(members) & (cells.receiver == source))]
    same = sel[sel.sender_point == sel.receiver_point]
    return list(same.sort_values("sender_index").sender_point.drop_duplicates())


def axis_figure(cells: pd.DataFrame, sims: pd.DataFrame | None, family: pd.DataFrame,
                measure: str | None, test_examples: int, path: Path) -> int:
    """The line plots of one compression axis; returns how many cut points it draws."""
    family = family.sort_values("level")
    source, axis = family.source.iloc[0], family.axis.iloc[0]
    members = list(family.name)
    levels = family.level.astype(float).to_numpy()
    points = _points(cells, source, members)
    own = family.accuracy.astype(float).to_numpy()
    if axis == "amount" and 0 not in levels and (source, source, TRAINED) in table_keys(cells):
        # amount 0 is the original itself: its self-stitches, its accuracy
        members, levels = [source, *members], np.concatenate([[0.0], levels])
        own = np.concatenate([[receiver_accuracy(cells, source, TRAINED)], own])
    xs = np.arange(len(levels))  # levels evenly spaced: amounts crowd toward 1
    if not points:
        return 0
    panels = [(f"{source} -> compressed", "into"), (f"compressed -> {source}", "from")]
    if measure is not None:
        panels.append((f"{measure}: {source} vs compressed", "measure"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(points)))
    absent = (math.nan, math.nan, math.nan)
    diagonals = {kind: [_diagonals(cells, *((source, m) if kind == "into" else (m, source)))
                        for m in members] for kind in ("into", "from")}
    for point, colour in zip(points, colours, strict=True):
        for ax, (_, kind) in zip(axes, panels, strict=True):
            if kind == "measure":
                values = [_similarity(sims, source, m, point, measure) for m in members]
                ax.plot(xs, values, marker="o", ms=4, color=colour, label=point)
                continue
            stats = np.array([d.get(point, absent) for d in diagonals[kind]])
            mean, low, high = stats.T
            ax.plot(xs, mean, marker="o", ms=4, color=colour, label=point)
            ax.fill_between(xs, low, high, color=colour, alpha=0.18, lw=0)
    bands = np.array([accuracy_interval(round(a * test_examples), test_examples)
                      for a in own])
    for ax, (title, kind) in zip(axes, panels, strict=True):
        if kind != "measure":
            ax.plot(xs, own, ls="--", color="black", label="compressed network itself")
            ax.fill_between(xs, bands[:, 0], bands[:, 1], color="black", alpha=0.1, lw=0)
            ax.set_ylabel("accuracy")
        else:
            ax.set_ylabel(measure)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(str(axis))
        ax.set_xticks(xs, [f"{v:g}" for v in levels])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    first = family.iloc[0]
    made = (f"{first['method']} pruning of {source}" if first["kind"] == "prune"
            else f"{first.get('model', '?')} distilled from {source}")
    fig.suptitle(f"{first['family']}: {made}, against the {axis}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return len(points)


def _similarity(sims: pd.DataFrame | None, source: str, member: str, point: str,
                measure: str) -> float:
    if sims is None or measure not in sims.columns:
        return math.nan
    for s, r in ((source, member), (member, source)):
        sel = sims[(sims.sender == s) & (sims.receiver == r) & (sims.control == TRAINED)
                   & (sims.sender_point == point) & (sims.receiver_point == point)]
        if len(sel):
            return float(sel[measure].iloc[-1])
    return math.nan


def compression_section(cells: pd.DataFrame | None, sims: pd.DataFrame | None,
                        networks: pd.DataFrame, figs: Path) -> str:
    """The section's HTML ('' for a sweep without compressed networks)."""
    comp = compressed_networks(networks)
    if comp.empty:
        return ""
    trained = networks[networks.role == "trained"]
    sources = dict(zip(trained.name, trained.accuracy.astype(float), strict=True))
    parts = ["<h2>Compressed networks</h2>",
             "<p>Each pruned or distilled network, how it was made and what it measures "
             "(accuracy on the test split; parameters after compression; zero weights of "
             "the conv and linear layers).</p>", html_table(_summary(comp, sources))]
    if cells is None:
        return "".join(parts)
    measures = [m for m in ("cka", "linear_cka") if sims is not None and m in sims.columns]
    if sims is not None and not measures:
        skip = {"spec", "sender", "receiver", "control", "sender_point", "sender_index",
                "receiver_point", "receiver_index", "seed"}
        measures = [c for c in sims.columns if c not in skip and "_" not in c]
    measure = measures[0] if measures else None
    test_examples = int(cells.test_examples.max()) if "test_examples" in cells and \
        cells.test_examples.notna().any() else 0
    figures = []
    for name, family in comp[comp.axis.notna()].groupby("family", sort=True):
        if family.level.nunique() < 2:
            continue
        path = figs / f"{slug('compression', str(name))}.png"
        drawn = axis_figure(cells, sims, family, measure, test_examples, path)
        if drawn:
            figures.append(figure(path, (
                f"{html.escape(str(name))}: per cut point (colours), the stitched accuracy "
                "of the original into the compressed network at the same point, and back, "
                "with 95% intervals over the test examples (over seeds where there are "
                f"several); {measure or 'no similarity measure'} between the two at that "
                "point (one number per cell); dashed: the compressed network's own "
                "accuracy (Wilson 95% interval). Levels evenly spaced; amount 0, where "
                "drawn, is the original itself: its self-stitches.")))
    if figures:
        parts += ["<h3>Against the compression level</h3>",
                  f'<div class="grid">{"".join(figures)}</div>']
    return "".join(parts)
