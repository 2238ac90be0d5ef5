"""Sanity checks of a result store: what a careful reviewer of a stitching study asks first.

    self-pairs            a network stitched into itself at the same cut point keeps its own
                          accuracy (each diagonal cell within 1 point of it)
    controls              trained -> trained stitches beat random -> trained ones, on average,
                          for every pair that has both
    layer identification  for two networks of one family (one model with different seeds, or
                          variants such as resnet-1111 and resnet-1112), the most similar
                          receiver point of each sender point is the point of the same name
                          (Kornblith et al. 2019), by stitching and by each measure
    convergence           the share of cells whose fit converged

Each check is {"name", "passed", "value", "detail"}; `passed` is None, with the reason in
`detail`, when the store cannot answer it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from plato.similarity import MEASURES
from plato.sweep.store import Store
from plato.sweep.tables import load_cells, load_similarities, stat_table, table_keys

SELF_PAIR_POINTS = 0.01  # a same-point self-stitch may lose at most this much accuracy
IDENTIFIED_SHARE = 0.5  # layer identification passes when most sender points are identified
CONVERGED_SHARE = 0.95  # the convergence check passes when this share of cells converged


@dataclass
class Check:
    name: str
    passed: bool | None  # None: the store cannot answer it (see detail)
    value: float | None
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_checks(store: Store, spec: str | None = None) -> list[Check]:
    """Every check, on the cells (and similarity measures) of `spec` (default: all)."""
    cells = load_cells(store, spec) if len(store.cells(spec)) else None
    sims = load_similarities(store, spec) if len(store.similarities(spec)) else None
    networks = store.networks(spec)
    checks = []
    if cells is None:
        none = "the store holds no stitching cells"
        checks += [Check("self-pairs", None, None, none), Check("controls", None, None, none),
                   Check("layer identification (stitching)", None, None, none),
                   Check("convergence", None, None, none)]
    else:
        checks += [self_pairs(cells), controls(cells),
                   layer_identification(cells, networks, "stitched_accuracy", "stitching")]
    if sims is not None:
        measures = [m for m in sims.columns if m in MEASURES]
        checks += [layer_identification(sims, networks, m, m) for m in measures]
    if cells is not None:
        checks.append(convergence(cells))
    return checks


def self_pairs(cells: pd.DataFrame) -> Check:
    """Each diagonal cell of each network's self-pair table against the network's accuracy."""
    gaps = {}
    for s, r, c in table_keys(cells):
        if s != r or c != "trained->trained":
            continue
        table = stat_table(cells, s, r, c)
        own = float(cells[(cells.receiver == r) & (cells.control == c)]
                    .receiver_accuracy.dropna().iloc[0])
        for p in table.index.intersection(table.columns):
            if np.isfinite(table.loc[p, p]):
                gaps[f"{s}:{p}"] = own - float(table.loc[p, p])
    if not gaps:
        return Check("self-pairs", None, None, "no network is stitched into itself "
                     "(trained->trained) in the store: add self-pairs (`pairs: all`)")
    worst = max(gaps, key=lambda k: abs(gaps[k]))
    bad = [k for k, g in gaps.items() if abs(g) > SELF_PAIR_POINTS]
    return Check("self-pairs", not bad, round(100 * gaps[worst], 3),
                 f"largest difference {100 * gaps[worst]:+.2f} points below the network's "
                 f"own accuracy at {worst}; within {100 * SELF_PAIR_POINTS:g} point: "
                 f"{len(gaps) - len(bad)}/{len(gaps)} diagonal cells"
                 + (f"; outside: {', '.join(bad[:5])}" if bad else ""))


def controls(cells: pd.DataFrame) -> Check:
    """Per pair, the mean stitched accuracy of trained -> trained minus random -> trained,
    over the cells both have."""
    margins = {}
    for s, r in sorted({(s, r) for s, r, _ in table_keys(cells)}):
        have = {c for s_, r_, c in table_keys(cells) if (s_, r_) == (s, r)}
        if not {"trained->trained", "random->trained"} <= have:
            continue
        trained = stat_table(cells, s, r, "trained->trained")
        random = stat_table(cells, s, r, "random->trained").reindex_like(trained)
        both = np.isfinite(trained.to_numpy()) & np.isfinite(random.to_numpy())
        if both.any():
            margins[f"{s}->{r}"] = float((trained.to_numpy() - random.to_numpy())[both].mean())
    if not margins:
        return Check("controls", None, None, "no pair has both trained->trained and "
                     "random->trained cells: add `random->trained` to the spec's controls")
    worst = min(margins, key=margins.get)
    bad = [k for k, m in margins.items() if m <= 0]
    return Check("controls", not bad, round(100 * margins[worst], 3),
                 f"smallest mean margin of trained over random {100 * margins[worst]:+.2f} "
                 f"points ({worst}); pairs above: {len(margins) - len(bad)}/{len(margins)}"
                 + (f"; not above: {', '.join(bad)}" if bad else ""))


def family(model: str) -> str:
    """A zoo model's family: the name before its variant (`resnet-1112` -> `resnet`); the
    variants of a family name their cut points alike."""
    return model.split("-")[0]


def layer_identification(cells: pd.DataFrame, networks: pd.DataFrame, metric: str,
                         label: str) -> Check:
    """Over every ordered pair of different networks of one family (one model with different
    seeds, or models whose cut points share names, as `resnet-1111` and `resnet-1112`: the
    same stage boundaries), the share of sender points whose best receiver point by
    `metric` is the point of the same name."""
    name = f"layer identification ({label})"
    model = {n: family(m) for n, m in zip(networks.name, networks.model, strict=False)}
    larger = MEASURES[metric].larger_is_more_similar if metric in MEASURES else True
    hits = total = 0
    pairs = []
    for s, r, c in table_keys(cells):
        if c != "trained->trained" or s == r or model.get(s) is None \
                or model.get(s) != model.get(r):
            continue
        table = stat_table(cells, s, r, c, metric)
        pairs.append(f"{s}->{r}")
        for p in table.index.intersection(table.columns):
            row = table.loc[p].to_numpy(dtype=float)
            if not np.isfinite(row).any() or not np.isfinite(table.loc[p, p]):
                continue
            best = np.nanmax(row) if larger else np.nanmin(row)
            hits += bool(table.loc[p, p] == best)
            total += 1
    if not total:
        return Check(name, None, None, "no two networks of one family (trained->trained, "
                     "different networks) in the store: add a second seed of a network")
    share = hits / total
    return Check(name, share >= IDENTIFIED_SHARE, round(share, 4),
                 f"{hits}/{total} sender points' most similar receiver point is the "
                 f"corresponding one, over {', '.join(pairs)} (passes at "
                 f"{IDENTIFIED_SHARE:g}; chance is about 1/points)")


def convergence(cells: pd.DataFrame) -> Check:
    """The share of fitted cells that say they converged."""
    fitted = cells[cells.status == "done"]
    known = fitted["converged"].dropna() if "converged" in fitted.columns else pd.Series([])
    if known.empty:
        return Check("convergence", None, None, "no cell records whether its fit converged "
                     "(cells fitted for a fixed number of epochs)")
    share = float(known.astype(bool).mean())
    return Check("convergence", share >= CONVERGED_SHARE, round(share, 4),
                 f"{int(known.astype(bool).sum())}/{len(known)} cells converged (passes at "
                 f"{CONVERGED_SHARE:g})")
