"""The sweep report: its sanity checks first (also written as checks.json beside the page),
then every table, control and debiased table as a heatmap, on one self-contained HTML page
(images inlined), with the spec and the networks' accuracies.

All text that comes from a spec or a store is escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from plato.errors import PlatoError
from plato.files import write_file
from plato.report.compression import compression_section
from plato.report.heatmaps import heatmap, scatter
from plato.report.interpret import cell_saliency_pictures, interpretation_section
from plato.report.page import figure, html_table, slug
from plato.similarity import MEASURES
from plato.stitch.registry import resolve_stitch
from plato.sweep.checks import Check, run_checks, verdict
from plato.sweep.store import Store
from plato.sweep.tables import (
    debiased_interval,
    debiased_table,
    debiasing_controls,
    interval_description,
    latest_table,
    load_cells,
    load_similarities,
    measure_columns,
    receiver_accuracy,
    stat_table,
    table_keys,
)

NULL_LEVEL = 0.05  # a similarity cell whose permutation p-value exceeds this is circled
CELL_PICTURES = 48  # cells whose saliency maps the interactive page carries (~60 KB each)

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table.meta { border-collapse: collapse; margin: 1em 0; }
table.meta td, table.meta th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; max-width: 520px; }
img { max-width: 560px; } pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def seeds_phrase(n: pd.DataFrame) -> str:
    """How many stitch seeds a table's cells average, as a title says it: "1 seed", "mean of
    3 seeds", "mean of 1 to 3 seeds" (cells that lost a seed to a failure)."""
    counts = n.to_numpy()[np.isfinite(n.to_numpy())].astype(int)
    low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
    if high <= 1:
        return "1 seed"
    return f"mean of {high} seeds" if low == high else f"mean of {low} to {high} seeds"


def _checks_table(checks: list[Check]) -> str:
    """The checks, failures first in red; the same list is in checks.json beside the page."""
    verdict = {True: ("pass", "#1a7f37"), False: ("FAIL", "#cf222e"), None: ("n/a", "#6e7781")}
    rows = []
    for c in sorted(checks, key=lambda c: {False: 0, True: 1, None: 2}[c.passed]):
        word, colour = verdict[c.passed]
        rows.append(f'<tr><td style="color:{colour};font-weight:bold">{word}</td>'
                    f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td></tr>")
    return ('<table class="meta"><tr><th></th><th>check</th><th>detail</th></tr>'
            + "".join(rows) + "</table>")


def _similarity_parts(cells: pd.DataFrame | None, sims: pd.DataFrame, sender: str,
                      receiver: str, metric: str, figs: Path) -> str:
    """Heatmaps of every geometric measure, and each against stitching (scatter, Spearman)."""
    measures = [m for m in measure_columns(sims) if m in MEASURES]
    controls = [c for s, r, c in table_keys(sims) if (s, r) == (sender, receiver)]
    parts, rows = [], []
    for control in controls:
        for m in measures:
            table = stat_table(sims, sender, receiver, control, m)
            path = figs / f"{slug(sender, receiver, control, m)}.png"
            # cells no more similar than shuffled pairs of examples, where a null was computed:
            # by the family-wise p-value (every cell of the table against the shuffles' most
            # similar cell) where the store has it, else by each cell's own
            column = next((c for c in (f"{m}_fw_p", f"{m}_p") if c in sims.columns
                           and sims[c].notna().any()), None)
            chance = stat_table(sims, sender, receiver, control, column) > NULL_LEVEL \
                if column else None
            heatmap(table, path, f"{m}: {sender} vs {receiver} ({control})", scale=m,
                    marks=chance)
            more = "higher" if MEASURES[m].larger_is_more_similar else "lower"
            which = ("family-wise p (against the most similar cell of each shuffle: a "
                     "cell passes only if it beats every cell of an unrelated pair)"
                     if column and column.endswith("_fw_p") else "p")
            caption = (f"{MEASURES[m].description} ({more} = more similar), {control}: "
                       f"rows = {sender} points, columns = {receiver} points. "
                       "Blank = undefined."
                       + (f" Circled ({int(chance.to_numpy().sum())}): {which} > "
                          f"{NULL_LEVEL:g} against the permutation null (no more similar than "
                          "shuffled pairs of examples; k shuffles cannot give p below "
                          "1/(k+1))." if chance is not None else ""))
            parts.append(figure(path, caption))
            if cells is None or (sender, receiver, control) not in table_keys(cells):
                continue
            stitched = stat_table(cells, sender, receiver, control, metric).reindex_like(table)
            x, y = table.to_numpy().ravel(), stitched.to_numpy().ravel()
            ok = np.isfinite(x) & np.isfinite(y)
            # (undefined where either side is constant: a self-pair's diagonal cells only)
            rho = pd.Series(x[ok]).corr(pd.Series(y[ok]), method="spearman") \
                if ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0 else float("nan")
            path = figs / f"{slug(sender, receiver, control, m, 'scatter')}.png"
            scatter(x[ok], y[ok], path, f"{sender} -> {receiver} ({control}): "
                    f"Spearman {rho:.2f}", m, metric)
            parts.append(figure(path, f"{metric} against {m}, one dot per cell pair "
                                       f"({int(ok.sum())}); Spearman rank correlation "
                                       f"{rho:.3f}"))
            rows.append({"control": control, "measure": m, "cells": int(ok.sum()),
                         "spearman": f"{rho:.3f}"})
    summary = ("<p>Rank correlation of stitching with each measure:</p>"
               + html_table(pd.DataFrame(rows))) if rows else ""
    return ("<h3>Representational similarity</h3>"
            f'<div class="grid">{"".join(parts)}</div>{summary}')


def _scores_section(store_path: str | Path, spec: str | None, all_specs: bool, metric: str,
                    measures: list[str]) -> str:
    """One number per pair of networks (plato.sweep.scores) for stitching, debiased stitching
    and each measure, as `plato table` gives them."""
    from plato.similarity.model_level import SCORE_NAMES
    from plato.sweep.views import TableQuery, table_views

    def interval(s: dict, low: str = "low", high: str = "high") -> str:
        return "" if s.get(low) is None else f" [{s[low]:.4f}, {s[high]:.4f}]"

    queries = [TableQuery(spec, all_specs, metric=metric),
               TableQuery(spec, all_specs, metric=metric, debiased="diff",
                          control="random->trained"),
               *(TableQuery(spec, all_specs, metric=m) for m in measures)]
    rows = []
    for query in queries:
        try:
            views = table_views(store_path, query).views
        except PlatoError:  # no such table in this store (no control, no measure)
            continue
        for v in views:
            for name, s in (v.scores or {}).items():
                if s.get("value") is None:
                    continue
                rows.append({
                    "pair": f"{v.sender} -> {v.receiver}", "metric": v.metric
                    + (" (debiased)" if query.debiased else ""),
                    "score": SCORE_NAMES[name] + (f" ({s['row']}, {s['column']})"
                                                  if s.get("row") else ""),
                    "value [95%]": f"{s['value']:.4f}{interval(s)}",
                    "bias-corrected": "" if s.get("bias_corrected") is None else
                    f"{s['bias_corrected']:.4f}",
                    "calibrated [95%]": "" if s.get("calibrated") is None else
                    f"{s['calibrated']:.4f}{interval(s, 'calibrated_low', 'calibrated_high')}",
                    "p": "" if s.get("p_value") is None else f"{s['p_value']:.4f}",
                    "cells": s.get("cells"), "note": s.get("note", "")})
    if not rows:
        return ""
    return ("<h2>One number per pair of networks</h2><p>The most similar cell and the mean "
            "along relative depth (each sender point with the receiver point at the same "
            "relative position). Similarity measures with a permutation null: on the null's "
            "examples, a jackknife interval over the examples (around the jackknife's "
            "bias-corrected estimate), the p-value against the same "
            "score of each shuffle (for the most similar cell, the family-wise one), and "
            "the score calibrated to 0 at the shuffles' mean and 1 at identity. Stitching: "
            "the interval over stitch seeds and test examples; debiased is its calibrated "
            "form (0: a random sender does as well).</p>" + html_table(pd.DataFrame(rows)))


def unconverged(cells: pd.DataFrame, sender: str, receiver: str,
                control: str) -> pd.DataFrame | None:
    """True where some seed's fit of the cell did not converge; None where no cell says."""
    if "converged" not in cells.columns or cells.converged.isna().all():
        return None
    share = stat_table(cells, sender, receiver, control, "converged")
    return share < 1


def _stitching_parts(cells: pd.DataFrame, sender: str, receiver: str, metric: str,
                     threshold: float, figs: Path) -> str:
    """One pair's stitching tables: each control's mean (and std over seeds), the debiased
    tables, the latest stitchable receiver point."""
    parts, latest_html = [], ""
    controls = [c for s, r, c in table_keys(cells) if (s, r) == (sender, receiver)]
    # Trained cells not distinguishable from their random sender: the paired 95% interval of
    # trained - random (stitched accuracy, the same test examples) contains 0.
    chance = None
    if metric == "stitched_accuracy" and "random->trained" in controls:
        low, high = debiased_interval(cells, sender, receiver, "random->trained")
        chance = (low <= 0) & (high >= 0)
        interval_of_difference = interval_description(cells, sender, receiver,
                                                      "trained->trained", metric, True)
    for control in controls:
        mean = stat_table(cells, sender, receiver, control, metric)
        n = stat_table(cells, sender, receiver, control, metric, "n")
        path = figs / f"{slug(sender, receiver, control, metric)}.png"
        marks = chance if control == "trained->trained" else None
        crosses = unconverged(cells, sender, receiver, control)
        heatmap(mean, path, f"{metric}: {sender} -> {receiver} ({control}), "
                f"{seeds_phrase(n)}", scale=metric, marks=marks,
                crosses=crosses)
        circled = int(marks.to_numpy().sum()) if marks is not None else 0
        crossed = int(crosses.to_numpy().sum()) if crosses is not None else 0
        parts.append(figure(path, f"{control}: rows = {sender} cut points (sender), "
                                   f"columns = {receiver} cut points (receiver). "
                                   "Blank = not stitchable."
                             + (f" Circled ({circled}): not distinguishable from the random "
                                f"sender ({interval_of_difference}, contains 0)."
                                if marks is not None else "")
                             + (f" Crossed ({crossed}): a fit that did not converge "
                                "(stalled, cut off by max_steps or diverged)." if crossed
                                else "")))
        if n.max().max() > 1:
            std = stat_table(cells, sender, receiver, control, metric, "std")
            path = figs / f"{slug(sender, receiver, control, metric, 'std')}.png"
            heatmap(std, path, f"std over seeds: {sender} -> {receiver} ({control})",
                    scale="std")
            parts.append(figure(path, f"{control}: standard deviation over seeds"))
        if control == "trained->trained":
            acc = receiver_accuracy(cells, receiver, control)
            latest = latest_table(cells, sender, receiver, control, metric, threshold)
            latest_html = (f"<p>Latest stitchable receiver point (accuracy &ge; "
                           f"{threshold:g} &times; receiver's {acc:.4f}):</p>"
                           + html_table(latest.rename("latest").reset_index().rename(
                               columns={"index": "sender point"}).fillna("none")))
    for random_control in debiasing_controls(cells, sender, receiver):
        for normalized in (False, True):
            table = debiased_table(cells, sender, receiver, metric, random_control, normalized)
            kind = "debiased_normalized" if normalized else "debiased"
            path = figs / f"{slug(sender, receiver, kind, random_control)}.png"
            formula = ("(trained - random) / (receiver accuracy - random)"
                       if normalized else "trained - random")
            heatmap(table, path, f"{kind}: {sender} -> {receiver} "
                    f"(random control {random_control})", scale=kind)
            parts.append(figure(path, f"{formula}, control {random_control}"))
    return f'<div class="grid">{"".join(parts)}</div>{latest_html}'


def _stitch_line(meta, cells: pd.DataFrame) -> str:
    """What the cells' stitch is (from the stitch-type registry) and how many parameters it
    has per cell."""
    identity = json.loads(meta.identity) if meta is not None and meta.identity else {}
    name = identity.get("stitch")
    if not name:
        return ""
    try:
        summary = resolve_stitch(name)[0].summary
    except PlatoError:  # a type registered where the store was made, not here
        summary = "a stitch type not registered here"
    counts = cells.stitch_parameters.dropna() if "stitch_parameters" in cells else []
    sizes = (f"; {int(counts.min()):,} to {int(counts.max()):,} trainable parameters per cell"
             if len(counts) else "")
    return f"<p>{html.escape(f'stitch {name}: {summary}{sizes}')}</p>"


def write_report(store_path: str | Path, out_dir: str | Path, spec: str | None = None,
                 metric: str = "stitched_accuracy", threshold: float = 0.9,
                 all_specs: bool = False, static: bool = False) -> Path:
    """Write report.html (and its pictures) under out_dir; returns the HTML path. Interactive
    by default (plato.report.interactive: Plotly heatmaps, a details panel per cell); `static`:
    every table as a PNG heatmap on a page with no script. A store of several specs needs
    `spec`, or `all_specs` to pool them (Store.one_spec)."""
    out = Path(out_dir)
    figs = out / "heatmaps"
    with Store(store_path, create=False) as store:
        spec = store.one_spec(spec, all_specs)
        all_cells = store.cells(spec)
        cells = load_cells(store, spec) if len(all_cells) else None
        sims = load_similarities(store, spec) if len(store.similarities(spec)) else None
        networks = store.networks(spec)
        sweeps = store.sweeps()
        checks = run_checks(store, spec)
        interpretation = interpretation_section(store, spec, cells, Path(store_path).parent,
                                                figs)
        compression = compression_section(cells, sims, networks, figs)
        # the interactive panel's pictures of each cell (the static page shows two)
        cell_figures = ("", 0) if static else cell_saliency_pictures(
            cells, Path(store_path).parent, figs, CELL_PICTURES)
    if spec is not None:
        sweeps = sweeps[sweeps.spec == spec]
    if cells is None and sims is None and not interpretation:
        raise PlatoError(f"{store_path} holds no cells and no similarity measures yet")
    meta = sweeps.iloc[-1] if len(sweeps) else None
    title = f"Plato report: {meta.spec}" if meta is not None else "Plato report"
    nets = networks[["name", "role", "model", "accuracy", "init_seed", "trained_on",
                     "checkpoint"]].copy()
    nets["accuracy"] = nets.accuracy.map(lambda v: f"{v:.4f}")
    nets["init_seed"] = nets.init_seed.map(lambda v: "" if pd.isna(v) else str(int(v)))
    common = {
        "header": f"<h1>{html.escape(title)}</h1>"
                  f"<p>{html.escape(_summary(meta, all_cells, metric))}</p>"
                  + _stitch_line(meta, all_cells),
        "networks": "<h2>Networks</h2>" + html_table(nets),
        "scores": _scores_section(store_path, spec, all_specs, metric,
                                  [m for m in measure_columns(sims) if m in MEASURES]
                                  if sims is not None else []),
        "compression": compression,
        "interpretation": interpretation,
        "spec": ("<h2>Sweep spec</h2>" + f"<pre>{html.escape(meta.source)}</pre>"
                 if meta is not None and meta.source else ""),
    }
    if static:
        body = _static_body(common, checks, cells, sims, metric, threshold, figs)
        page = ("<!doctype html><html><head><meta charset='utf-8'>"
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
                + body + "</body></html>")
    else:
        from plato.report.interactive import interactive_page

        page = interactive_page(title, common, checks, cells, sims, metric, cell_figures)
    write_file(out / "checks.json", json.dumps([c.to_dict() for c in checks], indent=1))
    return write_file(out / "report.html", page)


def _summary(meta, all_cells: pd.DataFrame, metric: str) -> str:
    """The line under the title: dataset, granularity, metric, the cells by status."""
    status = all_cells.status.value_counts().to_dict() if len(all_cells) else {}
    if "converged" in all_cells.columns and all_cells.converged.notna().any():
        known = all_cells.converged.dropna()
        status["not converged"] = int((known == 0).sum())
    return (f"dataset {meta.dataset if meta is not None else '?'}; cut points at "
            f"{meta.granularity if meta is not None else '?'} granularity; metric {metric}; "
            f"cells: " + ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
            + f"; plato {meta.plato_version if meta is not None else '?'}; written "
            f"{_dt.datetime.now().isoformat(timespec='seconds')}")


def _static_body(common: dict, checks: list[Check], cells: pd.DataFrame | None,
                 sims: pd.DataFrame | None, metric: str, threshold: float, figs: Path) -> str:
    """The static page: the checks, the networks, then every pair's tables as PNG heatmaps."""
    sections = []
    keys = table_keys(cells) if cells is not None else []
    sim_keys = table_keys(sims) if sims is not None else []
    pairs = sorted({(s, r) for s, r, _ in keys + sim_keys}, key=lambda p: (p[0], p[1]))
    for sender, receiver in pairs:
        stitching = _stitching_parts(cells, sender, receiver, metric, threshold, figs) \
            if (sender, receiver) in {k[:2] for k in keys} else ""
        sim_html = _similarity_parts(cells, sims, sender, receiver, metric, figs) \
            if sims is not None else ""
        sections.append(f"<h2>{html.escape(sender)} &rarr; {html.escape(receiver)}</h2>"
                        f"{stitching}{sim_html}")
    return "\n".join([common["header"], "<h2>Sanity checks</h2>",
                      f'<p><b>{html.escape(verdict(checks))}</b></p>', _checks_table(checks),
                      common["networks"], common["scores"], common["compression"], *sections,
                      common["interpretation"], common["spec"]])
