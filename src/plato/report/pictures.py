"""Figures of the interpretation results: image grids (reconstructions, saliency maps) and
reconstruction quality against depth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from plato.report.heatmaps import save_figure


def _as_image(x: torch.Tensor) -> np.ndarray:
    """(c, H, W) uint8 or float -> what imshow takes: (H, W) grey or (H, W, 3)."""
    a = x.detach().cpu()
    a = a.float() / 255.0 if a.dtype == torch.uint8 else a.float()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def image_grid(rows: Sequence[tuple[str, torch.Tensor]], path: str | Path, title: str,
               cmap: str = "gray", overlay: torch.Tensor | None = None) -> plt.Figure:
    """One row per (label, images (n, c, H, W)), the same n images across: e.g. originals,
    then one row per cut point. Maps (n, H, W) are drawn with `cmap` over `overlay` (the
    originals, faded) when given."""
    n = max(len(images) for _, images in rows)
    size = 1.05
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 + size * n, 0.35 + size * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for i in range(n):
            ax = axes[r][i]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i >= len(images):
                continue
            x = images[i]
            if x.dim() == 2:  # a map
                if overlay is not None:
                    ax.imshow(_as_image(overlay[i]), cmap="gray", alpha=0.35,
                              interpolation="nearest")
                ax.imshow(x.float().numpy(), cmap=cmap, interpolation="nearest",
                          alpha=0.75 if overlay is not None else 1.0)
            else:
                picture = _as_image(x)
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                          interpolation="nearest")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, palette=False)
    return fig


def quality_by_depth(frame: pd.DataFrame, path: str | Path, title: str) -> plt.Figure:
    """PSNR and SSIM of the decoder's reconstructions against the cut point, trained and
    random networks side by side, with 95% intervals of the mean over the test images;
    optimisation-based inversion (mean over the shown images) dashed. `frame`: one row per
    (network, role, point) with point_index, point, psnr, ssim, psnr_std, ssim_std,
    test_examples, optimised_psnr, optimised_ssim."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    colours = {"trained": "#1f77b4", "random": "#7f7f7f"}
    ticks: dict[int, str] = {}
    for (network, role), rows in frame.groupby(["network", "role"], sort=True):
        rows = rows.sort_values("point_index")
        ticks.update(zip(rows["point_index"], rows["point"], strict=True))
        label = f"{network} ({role})" if frame["network"].nunique() > 1 else role
        colour = colours.get(role)
        for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
            half = 1.96 * rows[f"{metric}_std"] / np.sqrt(rows["test_examples"].clip(lower=1))
            ax.errorbar(rows["point_index"], rows[metric], yerr=half, marker="o", ms=4,
                        capsize=3, color=colour, label=f"{label}: decoder")
            optimised = rows.get(f"optimised_{metric}")
            if optimised is not None and np.isfinite(optimised.astype(float)).any():
                ax.plot(rows["point_index"], optimised, ls="--", marker=".", color=colour,
                        alpha=0.7, label=f"{label}: optimisation (TV prior)")
    order = sorted(ticks)
    for ax, name in zip(axes, ("PSNR (dB)", "SSIM"), strict=True):
        ax.set_xticks(order, [ticks[i] for i in order], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("cut point")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(top=1.0)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig



def distance_accuracy(both: pd.DataFrame, path: str | Path) -> plt.Figure:
    """Stitched accuracy against the distance from the receiver's distribution, each cell's
    vanilla and autoencoder stitch joined by a line."""
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for _, r in both.iterrows():
        ax.plot([r.receiver_distance_vanilla, r.receiver_distance_autoencoder],
                [r.stitched_accuracy_vanilla, r.stitched_accuracy_autoencoder],
                color="#cccccc", lw=0.8, zorder=1)
    ax.scatter(both.receiver_distance_vanilla, both.stitched_accuracy_vanilla, s=16,
               label="vanilla (task)", zorder=2)
    ax.scatter(both.receiver_distance_autoencoder, both.stitched_accuracy_autoencoder, s=16,
               label="autoencoder (match)", zorder=2)
    own = both.receiver_own_distance.mean()
    ax.axvline(own, ls="--", color="#555555", lw=1)
    ax.text(own, ax.get_ylim()[0], " receiver's own", fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("distance from the receiver's distribution (log)")
    ax.set_ylabel("stitched accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
