"""The interactive report: one self-contained HTML file (Plotly's script and the data inlined,
so it opens offline and can be mailed). The checks first, each failing one linked to the cells
that fail it; then one heatmap with a control to switch pair, metric, control and view (the
mean, or trained minus a random control, plain or normalized); hover shows a cell's value and
interval, a click opens a panel of everything the store holds about that cell
(plato.report.explore). Below: the networks, the scores, the compression and interpretation
figures and the spec, as on the static page (`plato report --static`).

Every name reaches the page as data and is written with textContent by the page's script (or
escaped by Python), so a network called `<script>` is text. The data's JSON is embedded with
`<`, `>` and `&` as \\u escapes, so nothing in it can close its script element.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources

import pandas as pd

from plato.report.explore import cell_details, cell_pictures, explorer_tables
from plato.sweep.checks import Check, verdict

_FIGURE_ID = re.compile(r'<figure id="([^"]+)">')


def _asset(name: str) -> str:
    return resources.files("plato.report").joinpath("assets", name).read_text("utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def interactive_page(title: str, common: dict[str, str], checks: list[Check],
                     cells: pd.DataFrame | None, sims: pd.DataFrame | None, metric: str,
                     cell_figures: tuple[str, int] = ("", 0)) -> str:
    """The page's HTML; `common` holds the sections it shares with the static page (header,
    networks, scores, compression, interpretation, spec), already escaped; `cell_figures` the
    figures of single cells the panel shows (hidden until then) and how many cells have
    pictures in the store."""
    figures, pictured = cell_figures
    figure_ids = _FIGURE_ID.findall(common["compression"] + common["interpretation"] + figures)
    shown = len(_FIGURE_ID.findall(figures))
    data = {
        "metric": metric,
        "checks": [c.to_dict() for c in checks],
        "tables": explorer_tables(cells, sims),
        "cells": cell_details(cells, sims, cell_pictures(cells, figure_ids)),
        "pictures_note": (f"The page carries the saliency maps of {shown} of the {pictured} "
                          "cells that have them (the rest are in the run folder's interpret/)."
                          if pictured > shown else ""),
    }
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_asset('report.css')}</style>",
        f"<script>{_plotly_js()}</script>",
        f'<script type="application/json" id="plato-data">{_script_json(data)}</script>',
        "</head><body>",
        common["header"],
        f'<h2>Sanity checks</h2><p id="verdict">{html.escape(verdict(checks))}</p>'
        '<table class="meta" id="checks"></table>',
        '<h2>Tables</h2><p class="note">Hover a cell for its value and 95% interval; click it '
        "for everything the store holds about it. The same page without a script: "
        "<code>plato report --static</code>.</p>",
        '<div id="controls"></div>',
        '<div id="explorer"><div id="heatmap"></div><aside id="details">'
        "<p class='note'>Click a cell.</p></aside></div>",
        common["networks"], common["scores"], common["compression"],
        common["interpretation"], common["spec"],
        f'<div id="cell-figures" hidden>{figures}</div>',
        f"<script>{_asset('report.js')}</script>",
        "</body></html>",
    ])


def _plotly_js() -> str:
    """plotly.js, minified, from the Python package (no network: the page carries it). A
    `</script` inside it could not end the element early: it has none (asserted)."""
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs()
    assert "</script" not in script.lower()
    return script
