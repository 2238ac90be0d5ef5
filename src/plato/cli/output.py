"""Printing: one JSON object under --json (NaN as null: plato.jsonable), else text; tables for
the terminal."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from plato.errors import printable
from plato.jsonable import jsonable
from plato.similarity.model_level import SCORE_NAMES

if TYPE_CHECKING:
    import pandas as pd


def emit(obj: dict, as_json: bool, text: str) -> None:
    """Print `obj` as one JSON object, or `text` (control characters escaped: it holds the
    user's names)."""
    print(json.dumps(jsonable(obj)) if as_json else printable(text))


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A table for the terminal: NaN cells are blank."""
    return table.to_string(na_rep="", float_format=lambda v: f"{v:.{digits}f}")


def format_intervals(table: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame,
                     digits: int = 3) -> str:
    """value [low, high] per cell; a NaN value is blank, a NaN interval `[n/a]`."""
    def cell(v, lo, hi):
        if v != v:
            return ""
        return f"{v:.{digits}f} " + (f"[{lo:.{digits}f}, {hi:.{digits}f}]" if lo == lo
                                     else "[n/a]")

    shown = table.astype(object)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            shown.iat[i, j] = cell(table.iat[i, j], low.iat[i, j], high.iat[i, j])
    return shown.to_string()


def result_line(r) -> str:
    """A StitchResult in three lines."""
    return (f"{r.sender}:{r.sender_point} -> {r.receiver}:{r.receiver_point}  "
            f"[{r.stitch}, {r.objective}, {r.stitch_parameters} parameters]\n"
            f"  stitched accuracy {r.stitched_accuracy:.4f}  (sender {r.sender_accuracy:.4f}, "
            f"receiver {r.receiver_accuracy:.4f}, normalised {r.normalized_accuracy:.4f})\n"
            f"  activation MSE {r.activation_mse:.4g}  CKA {r.activation_cka:.4f}  "
            f"distance from the receiver's distribution {r.receiver_distance:.3g} "
            f"(its own test activations {r.receiver_own_distance:.3g})\n"
            f"  stitch loss {r.stitch_loss:.4g}  {r.epochs} epochs, {r.steps} steps"
            + ("" if r.converged is None else
               "  converged at its closed form (SGD did not better it)"
               if r.stop_reason == "optimal start" else
               "  converged" if r.converged else f"  NOT converged ({r.stop_reason})")
            + f"  {r.seconds:.1f} s")


def format_model_scores(scores: dict[str, dict]) -> list[str]:
    """A table's model-level scores (plato.similarity.model_level, plato.sweep.scores: dicts
    of value, low, high, calibrated..., p_value, row, column, cells, note) as lines."""
    def number(x) -> str:
        return "nan" if x is None else f"{x:.4f}"

    first = next(iter(scores.values()), {})
    lines = ["one number for the two networks" + (
        f" (on {first['examples']} examples; 95% intervals: jackknife over groups of "
        f"examples; p against {first['permutations']} shuffles, the same score of each):"
        if first.get("permutations") else ":")]
    for name, s in scores.items():
        at = f" ({s['row']}, {s['column']})" if s.get("row") else ""
        parts = [number(s.get("value"))]
        if s.get("low") is not None:
            parts[0] += f" [{number(s['low'])}, {number(s['high'])}]"
        if s.get("bias_corrected") is not None:
            parts[0] += f" (bias-corrected {number(s['bias_corrected'])})"
        if s.get("calibrated") is not None:
            parts.append(f"calibrated {number(s['calibrated'])} "
                         f"[{number(s.get('calibrated_low'))}, "
                         f"{number(s.get('calibrated_high'))}] (0: the shuffles', 1: identical)")
        if s.get("p_value") is not None:
            parts.append(f"p {number(s['p_value'])}")
        if s.get("note"):
            parts.append(s["note"])
        lines.append(f"  {SCORE_NAMES.get(name, name)}{at}, {s.get('cells', '?')} cells: "
                     + "; ".join(parts))
    return lines
