"""The interpretation figures of a run folder, from its stored results: reconstruction quality
against depth, and image grids (originals, then one row per cut point)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from plato.interpret.config import METHODS, ROLES
from plato.report.heatmaps import heatmap
from plato.report.page import figure, html_table, slug
from plato.report.pictures import distance_accuracy, image_grid, quality_by_depth
from plato.sweep.interpret import stored_pictures
from plato.sweep.store import Store
from plato.sweep.tables import load_cells, stat_table, table_keys


def invert_figures(frame: pd.DataFrame, run_dir: Path, title: str,
                   out_dir: Path | None = None) -> list[Path]:
    """From stored reconstructions (sweep.interpret.inversions_table; their pictures under
    `run_dir`): the quality plot and, per network and role, a grid of the decoder's
    reconstructions and one of the optimisation's, written to `out_dir` (default run_dir).
    Returns the PNG paths."""
    out_dir = out_dir or run_dir
    paths = [out_dir / "reconstruction_quality.png"]
    quality_by_depth(frame, paths[0], f"Reconstruction from each cut point: {title}")
    originals = stored_pictures(run_dir, "interpret/originals.safetensors").get("images")
    if originals is None:
        return paths
    for (network, role), rows in frame.groupby(["network", "role"], sort=False):
        rows = rows.sort_values("point_index")
        pictures = [(r["point"], stored_pictures(run_dir, r["file"])) for _, r in rows.iterrows()]
        for method, what in (("decoder", "trained decoder"),
                             ("optimised", "optimisation with a TV prior")):
            found = [(point, p[method]) for point, p in pictures if method in p]
            if not found:
                continue
            n = min(len(originals), *(len(images) for _, images in found))
            path = out_dir / f"{'reconstructions' if method == 'decoder' else 'inversions'}-" \
                             f"{network}-{role}.png"
            image_grid([("original", originals[:n]), *((p, images[:n]) for p, images in found)],
                       path, f"{network} ({role}): reconstructions by {what}")
            paths.append(path)
    return paths


def saliency_figure(result, originals: torch.Tensor, path: Path, title: str) -> Path:
    """Originals, then per method the sender's, the receiver's and the stitched network's
    maps over the faded originals (plato.interpret.saliency.SaliencyResult.shown)."""
    rows: list[tuple[str, torch.Tensor]] = [("original", originals)]
    order = {name: i for i, name in enumerate((*METHODS, *ROLES))}
    for (method, role), maps in sorted(result.shown.items(),
                                       key=lambda kv: (order.get(kv[0][0], 99),
                                                       order.get(kv[0][1], 99))):
        short = {"integrated_gradients": "IG", "gradient_x_input": "grad x input",
                 "grad_cam": "Grad-CAM"}.get(method, method)
        rows.append((f"{short}: {role}", maps.float()))
    image_grid(rows, path, title, cmap="inferno", overlay=originals)
    return path


# ---------------------------------------------------------------------------- the report

def interpretation_section(store: Store, spec: str | None, cells: pd.DataFrame | None,
                           run_dir: Path, figs: Path) -> str:
    """The report's interpretation section, from what the store holds for `spec`:
    reconstruction quality against depth and the image grids, saliency agreement heatmaps
    with a picture of a same-point and a distant cell, and how far the stitched activations
    lie from the receiver's distribution, vanilla vs autoencoder. Empty if none is there."""
    parts = []
    inversions = store.interpretations("invert", spec)
    if len(inversions):
        parts.append(_reconstruction_part(inversions, run_dir, figs))
    if cells is not None and "saliency_agreement" in cells and \
            cells.saliency_agreement.notna().any():
        parts.append(_saliency_part(cells, run_dir, figs))
    twin = f"{spec}-match" if spec else None
    if cells is not None and twin and len(store.cells(twin)):
        parts.append(_language_part(cells, load_cells(store, twin), figs))
    if not parts:
        return ""
    return "<h2>What the layers know</h2>" + "".join(parts)


def _reconstruction_part(frame: pd.DataFrame, run_dir: Path, figs: Path) -> str:
    # a spec rerun with other invert settings stores new reconstructions beside the old: the
    # report shows the latest of each
    frame = frame.sort_values("finished").drop_duplicates(["network", "role", "point"],
                                                          keep="last")
    frame = frame.sort_values(["network", "role", "point_index"])
    paths = invert_figures(frame, run_dir, "decoder and optimisation", figs)
    captions = ["PSNR and SSIM of the input reconstructed from each cut point (test split; "
                "bars: 95% interval of the mean), trained network against its random-init "
                "control. The decoder is fitted on the training split until a held-out slice "
                "stops improving; the dashed lines invert the shown images by optimisation "
                "with a total-variation prior."]
    captions += [f"{p.stem.replace('-', ' ', 1)}: originals, then one row per cut point"
                 for p in paths[1:]]
    table = frame[["network", "role", "point", "psnr", "ssim", "optimised_psnr", "steps",
                   "converged"]].copy()
    for column in ("psnr", "optimised_psnr"):
        table[column] = table[column].map(lambda v: f"{v:.2f}")
    table["ssim"] = table["ssim"].map(lambda v: f"{v:.3f}")
    table["converged"] = table["converged"].map(lambda v: "yes" if v else "NO")
    return ("<h3>Reconstructing the input from each cut point</h3>"
            + '<div class="grid">'
            + "".join(figure(p, c) for p, c in zip(paths, captions, strict=True)) + "</div>"
            + html_table(table))


def _saliency_part(cells: pd.DataFrame, run_dir: Path, figs: Path) -> str:
    parts, rows = [], []
    for sender, receiver, control in table_keys(cells):
        for metric, what in (("saliency_agreement", "the receiver's"),
                             ("saliency_agreement_sender", "the sender's")):
            table = stat_table(cells, sender, receiver, control, metric)
            path = figs / f"{slug(sender, receiver, control, metric)}.png"
            heatmap(table, path, f"{metric}: {sender} -> {receiver} ({control})", scale=metric)
            parts.append(figure(path, f"{control}: Spearman rank correlation of the stitched "
                                      f"network's saliency map with {what}, mean over the test "
                                      "images (the spec's first saliency method)"))
        sel = cells[(cells.sender == sender) & (cells.receiver == receiver)
                    & (cells.control == control)]
        gap = (sel.sender_index - sel.receiver_index).abs()
        for name, chosen in (("same point", sel[gap == 0]), ("one apart", sel[gap == 1]),
                             ("two or more apart", sel[gap >= 2])):
            if len(chosen):
                rows.append({"pair": f"{sender} -> {receiver}", "control": control,
                             "cells": name, "n": len(chosen),
                             "agreement with receiver":
                                 f"{chosen.saliency_agreement.mean():.3f}",
                             "with sender": f"{chosen.saliency_agreement_sender.mean():.3f}",
                             "deletion area": f"{chosen.deletion_area.mean():.3f}"})
    pictures = _saliency_pictures(cells, run_dir, figs)
    return ("<h3>Saliency through the stitched networks</h3>"
            + f'<div class="grid">{"".join(parts)}</div>'
            + "<p>Agreement by how far apart the two cut points are (by index):</p>"
            + html_table(pd.DataFrame(rows)) + pictures)


def _saliency_pictures(cells: pd.DataFrame, run_dir: Path, figs: Path) -> str:
    """The maps of a same-point cell and of the most distant cell of the first trained table."""
    trained = cells[(cells.control == "trained->trained") & cells.saliency_agreement.notna()]
    if trained.empty or "result" not in trained:
        return ""
    first = trained[(trained.sender == trained.sender.iloc[0])
                    & (trained.receiver == trained.receiver.iloc[0]) & (trained.seed == 0)]
    gap = (first.sender_index - first.receiver_index).abs()
    chosen = pd.concat([first[gap == 0].iloc[:1], first.loc[gap.sort_values().index[-1:]]])
    return saliency_pictures(chosen, run_dir, figs)


def saliency_pictures(chosen: pd.DataFrame, run_dir: Path, figs: Path) -> str:
    """Each chosen cell's stored saliency maps as a figure (id: slug('saliency', sender,
    sender point, receiver, receiver point), what the interactive report's panel shows)."""
    originals = stored_pictures(run_dir, "interpret/originals-saliency.safetensors")
    html_parts = []
    for _, cell in chosen.iterrows():
        found = json.loads(cell["result"] or "{}").get("saliency_file")
        maps = stored_pictures(run_dir, found)
        if not maps or "images" not in originals:
            continue
        result = SimpleNamespace(shown={tuple(k.split("/")): v for k, v in maps.items()})
        n = min(len(v) for v in maps.values())
        name = slug("saliency", cell.sender, cell.sender_point, cell.receiver,
                    cell.receiver_point)
        path = figs / f"{name}.png"
        saliency_figure(result, originals["images"][:n], path,
                        f"{cell.sender}:{cell.sender_point} -> "
                        f"{cell.receiver}:{cell.receiver_point}")
        html_parts.append(figure(path, f"Saliency maps of the sender, the receiver and the "
                                       f"stitched network at {cell.sender_point} -> "
                                       f"{cell.receiver_point} (agreement with the "
                                       f"receiver {cell.saliency_agreement:.2f})"))
    return f'<div class="grid">{"".join(html_parts)}</div>' if html_parts else ""


def cell_saliency_pictures(cells: pd.DataFrame | None, run_dir: Path, figs: Path,
                           limit: int) -> tuple[str, int]:
    """The saliency maps of up to `limit` trained cells (seed 0, in table order) for the
    interactive report's panel: (their figures, how many cells have maps)."""
    if cells is None or "saliency_agreement" not in cells or "result" not in cells:
        return "", 0
    trained = cells[(cells.control == "trained->trained") & cells.saliency_agreement.notna()
                    & (cells.seed == cells.seed.min())]
    trained = trained.sort_values(["sender", "receiver", "sender_index", "receiver_index"])
    return saliency_pictures(trained.iloc[:limit], run_dir, figs), len(trained)


def _language_part(vanilla: pd.DataFrame, autoencoder: pd.DataFrame, figs: Path) -> str:
    """Vanilla (the spec's objective) against autoencoder (match) stitches, cell by cell."""
    keys = ["sender", "receiver", "control", "seed", "sender_point", "sender_index",
            "receiver_point", "receiver_index"]
    columns = ["stitched_accuracy", "activation_mse", "receiver_distance"]
    both = vanilla[vanilla.status == "done"][keys + columns + ["receiver_own_distance"]].merge(
        autoencoder[autoencoder.status == "done"][keys + columns], on=keys,
        suffixes=("_vanilla", "_autoencoder"))
    if both.empty:
        return ""
    parts = []
    for sender, receiver, control in table_keys(both):
        for kind in ("vanilla", "autoencoder"):
            sel = both.rename(columns={f"receiver_distance_{kind}": "receiver_distance"})
            table = stat_table(sel.assign(status="done"), sender, receiver, control,
                               "receiver_distance")
            path = figs / f"{slug(sender, receiver, control, 'distance', kind)}.png"
            heatmap(table, path, f"distance from the receiver's distribution: {sender} -> "
                                 f"{receiver}, {kind} stitches", scale="receiver_distance")
            parts.append(figure(path, f"{kind} stitches: root mean squared Mahalanobis "
                                      "distance per channel of the stitched activations from "
                                      "the receiver's own (its own test activations: "
                                      f"{both.receiver_own_distance.mean():.2f} on average)"))
    path = figs / "distance_vs_accuracy.png"
    distance_accuracy(both, path)
    parts.append(figure(path, "Each cell twice: its vanilla and its autoencoder stitch. Far "
                              "from the receiver's distribution yet accurate: the receiver "
                              "copes with activations it never saw (a different language)."))
    table = both[["sender", "receiver", "sender_point", "receiver_point"]].copy()
    for c in columns:
        for kind in ("vanilla", "autoencoder"):
            digits = ".4f" if c == "stitched_accuracy" else ".3g"
            table[f"{c.split('_', 1)[1] if c != 'stitched_accuracy' else 'accuracy'} "
                  f"({kind})"] = both[f"{c}_{kind}"].map(lambda v, d=digits: f"{v:{d}}")
    summary = (both[[f"{c}_{k}" for c in columns for k in ("vanilla", "autoencoder")]]
               .mean().to_frame("mean over cells").T.map(lambda v: f"{v:.4g}"))
    return ("<h3>Does the stitch speak the receiver's language?</h3>"
            + f'<div class="grid">{"".join(parts)}</div>'
            + "<p>Vanilla (the spec's objective) against autoencoder (match) stitches, mean "
              "over the cells:</p>" + html_table(summary)
            + "<details><summary>Every cell</summary>" + html_table(table) + "</details>")
