"""The interpretation figures of a run folder, from its stored results: reconstruction quality
against depth, and image grids (originals, then one row per cut point)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from plato.report.pictures import image_grid, quality_by_depth
from plato.sweep.interpret import stored_pictures


def invert_figures(frame: pd.DataFrame, run_dir: Path, title: str) -> list[Path]:
    """From stored reconstructions (sweep.interpret.inversions_table): the quality plot and,
    per network and role, a grid of the decoder's reconstructions and one of the
    optimisation's. Returns the PNG paths."""
    paths = [run_dir / "reconstruction_quality.png"]
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
            path = run_dir / f"{'reconstructions' if method == 'decoder' else 'inversions'}-" \
                             f"{network}-{role}.png"
            image_grid([("original", originals[:n]), *((p, images[:n]) for p, images in found)],
                       path, f"{network} ({role}): reconstructions by {what}")
            paths.append(path)
    return paths


def saliency_figure(result, originals: torch.Tensor, path: Path, title: str) -> Path:
    """Originals, then per method the sender's, the receiver's and the stitched network's
    maps over the faded originals (plato.interpret.saliency.SaliencyResult.shown)."""
    rows: list[tuple[str, torch.Tensor]] = [("original", originals)]
    for (method, role), maps in result.shown.items():
        short = {"integrated_gradients": "IG", "gradient_x_input": "grad x input",
                 "grad_cam": "Grad-CAM"}.get(method, method)
        rows.append((f"{short}: {role}", maps.float()))
    image_grid(rows, path, title, cmap="inferno", overlay=originals)
    return path
