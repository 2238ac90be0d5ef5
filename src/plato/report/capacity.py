"""The capacity report: one pair of cut points stitched by families of growing capacity
(plato.stitch.capacity), accuracy against free parameters as one plot, and the table."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from plato.files import write_file
from plato.report.heatmaps import save_figure
from plato.report.html import CSS
from plato.report.page import figure, html_table
from plato.stitch.capacity import CapacityRow


def capacity_plot(rows: list[CapacityRow], path: str | Path, title: str = "") -> Path:
    """Accuracy (with its 95% interval) against free parameters (log scale), one marker and
    line per family; sparse strengths and low ranks labelled."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for family in dict.fromkeys(r.family for r in rows):
        part = [r for r in rows if r.family == family]
        x = [max(r.free_parameters, 1) for r in part]
        y = [100 * r.accuracy for r in part]
        err = [[100 * (r.accuracy - r.accuracy_low) for r in part],
               [100 * (r.accuracy_high - r.accuracy) for r in part]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=family,
                    linestyle="-" if len(part) > 1 else "none")
        if family in ("sparse", "lowrank"):
            for r, xi, yi in zip(part, x, y, strict=True):
                ax.annotate(r.stitch.split("-")[1], (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("free parameters of the stitch")
    ax.set_ylabel("stitched accuracy (%)")
    ax.set_title(title or "capacity of the stitch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path


def write_capacity_report(rows: list[CapacityRow], out_dir: str | Path, title: str) -> Path:
    """capacity.png, capacity.csv and report.html (the plot, then the table) in `out_dir`."""
    out = Path(out_dir)
    plot = capacity_plot(rows, out / "capacity.png", title)
    table = pd.DataFrame([r.to_dict() for r in rows])
    write_file(out / "capacity.csv", table.to_csv(index=False))
    shown = table.assign(accuracy=table.accuracy.map(lambda v: f"{100 * v:.1f}%"),
                         interval=[f"[{100 * lo:.1f}, {100 * hi:.1f}]" for lo, hi in zip(
                             table.accuracy_low, table.accuracy_high, strict=True)])
    shown = shown[["family", "stitch", "free_parameters", "parameters", "accuracy",
                   "interval", "converged", "stop_reason"]]
    page = ["<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            figure(plot, "Stitched accuracy (95% interval over the test examples) against the "
                   "stitch's free parameters, per family"),
            html_table(shown), "</body></html>"]
    return write_file(out / "report.html", "\n".join(page))
