"""Annotated heatmaps of similarity tables (PNG). NaN cells are blank and hatched."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from plato.files import write_file  # noqa: E402

# One colour scale per metric: (colour map, vmin, vmax); None = from the data.
SCALES = {
    "stitched_accuracy": ("viridis", 0.0, 1.0),
    "sender_accuracy": ("viridis", 0.0, 1.0),
    "receiver_accuracy": ("viridis", 0.0, 1.0),
    "normalized_accuracy": ("viridis", 0.0, 1.0),
    "activation_cka": ("viridis", 0.0, 1.0),
    "activation_mse": ("magma_r", 0.0, None),
    "stitched_loss": ("magma_r", 0.0, None),
    "stitch_loss": ("magma_r", 0.0, None),
    "receiver_distance": ("magma_r", 0.0, None),
    "receiver_own_distance": ("magma_r", 0.0, None),
    "saliency_agreement": ("RdBu", -1.0, 1.0),
    "saliency_agreement_sender": ("RdBu", -1.0, 1.0),
    "deletion_area": ("magma_r", 0.0, 1.0),
    "debiased": ("RdBu", -1.0, 1.0),
    "debiased_normalized": ("RdBu", -1.0, 1.0),
    "std": ("Greys", 0.0, None),
}


def save_figure(fig: plt.Figure, path: str | Path, palette: bool = True) -> None:
    """PNG, by default with a 256-colour palette: a quarter of the bytes of RGBA, for reports
    that inline a hundred figures (pictures of images keep their colours: palette=False)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    image = Image.open(buffer).convert("RGB")
    png = io.BytesIO()
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(png, format="png", optimize=True)
    write_file(path, png.getvalue())



def _scale(name: str) -> tuple[str, float, float | None]:
    if name in SCALES:
        return SCALES[name]
    from plato.similarity import MEASURES  # geometric measures: similarities 0..1, distances

    if name in MEASURES and not MEASURES[name].larger_is_more_similar:
        return ("magma_r", 0.0, None)
    return ("viridis", 0.0, 1.0)


def heatmap(table: pd.DataFrame, path: str | Path, title: str, scale: str = "stitched_accuracy",
            vmax: float | None = None, annotate: bool | None = None,
            marks: pd.DataFrame | None = None,
            crosses: pd.DataFrame | None = None) -> plt.Figure:
    """Draw `table` (rows = sender points, columns = receiver points) to `path`.

    Row 0 (the sender's first point) is at the top. `marks` (True/False per cell) circles the
    cells marked in their upper right corner, `crosses` crosses them in the upper left.
    Returns the (closed) figure so callers can inspect labels and data.
    """
    cmap_name, lo, hi = _scale(scale)
    hi = vmax if vmax is not None else hi
    values = table.to_numpy(dtype=float)
    if hi is None:
        finite = values[np.isfinite(values)]
        hi = float(finite.max()) if finite.size else 1.0
        hi = hi if hi > lo else lo + 1.0
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * cols + 1.6, 1.0 + 0.45 * rows + 1.2))
    # NaN cells are transparent, so the hatched background shows through them.
    cmap = plt.get_cmap(cmap_name).with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
    ax.patch.set_facecolor("white")
    ax.patch.set_hatch("///")  # shows through the blank (NaN) cells
    ax.patch.set_edgecolor("#bbbbbb")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi,
                      aspect="auto", interpolation="nearest")
    ax.set_xticks(range(cols), [str(c) for c in table.columns], rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks(range(rows), [str(r) for r in table.index], fontsize=8)
    ax.set_xlabel(str(table.columns.name or "receiver cut point"))
    ax.set_ylabel(str(table.index.name or "sender cut point"))
    ax.set_title(title, fontsize=10)
    if annotate is None:
        annotate = rows * cols <= 400
    if annotate:
        for i in range(rows):
            for j in range(cols):
                v = values[i, j]
                if np.isfinite(v):
                    shade = (v - lo) / (hi - lo) if hi > lo else 0.5
                    dark = shade > 0.55 if cmap_name in ("viridis",) else 0.25 < shade < 0.75
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if dark or cmap_name == "Greys" and shade < 0.5
                            else "white")
    if marks is not None:  # e.g. cells within their random control's interval
        marked = marks.reindex_like(table).fillna(False).to_numpy(dtype=bool)
        i, j = np.nonzero(marked)
        ax.scatter(j + 0.32, i - 0.28, s=18, marker="o", facecolors="none",
                   edgecolors="#d62728", linewidths=1.2)
    if crosses is not None:  # e.g. cells whose fit did not converge
        crossed = crosses.reindex_like(table).fillna(False).to_numpy(dtype=bool)
        i, j = np.nonzero(crossed)
        ax.scatter(j - 0.32, i - 0.28, s=22, marker="x", color="#ff7f0e", linewidths=1.5)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def scatter(x: np.ndarray, y: np.ndarray, path: str | Path, title: str, xlabel: str,
            ylabel: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(x, y, s=14, alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
