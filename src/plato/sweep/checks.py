"""Sanity checks of a result store: what a careful reviewer of a stitching study asks first.

    self-pairs            a network stitched into itself at the same cut point keeps its own
                          accuracy (each diagonal cell within 1 point of it)
    controls              trained -> trained stitches beat random -> trained ones, for every
                          pair that has both: the lower end of the 95% interval of the mean
                          margin, paired over the test examples and over stitch seeds, is
                          above zero (a margin that noise could give is not one)
    layer identification  for two networks of one family (one model with different seeds, or
                          variants such as resnet-1111 and resnet-1112), the most similar
                          receiver point of each sender point is the point of the same name
                          (Kornblith et al. 2019), by stitching and by each measure
    self-identification   within one network, each point is more similar to itself than to
                          any other point (task-loss stitching can fail it: a layer may look
                          more similar to another layer than to itself; Balogh & Jelasity 2025)
    convergence           the share of cells whose fit converged

Identification is strict: the point of the same name must be the single best of its row; a
tie is a miss, and a row that does not vary at all ("not identifiable": a network that learned
nothing gives one) is a miss too, counted apart in the detail.

Each check is {"name", "passed", "value", "detail", "cells"}; `passed` is None, with the reason
in `detail`, when the store cannot answer it; `cells` names the cells that fail it (what the
interactive report links each failing check to). Every check has a test with a store that makes it
fail (tests/sweep/test_checks.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plato.similarity import MEASURES
from plato.stats import seeds_examples_interval
from plato.sweep.store import Store
from plato.sweep.tables import (
    debiased_interval,
    load_cells,
    load_similarities,
    paired_differences,
    stat_table,
    table_keys,
)

SELF_PAIR_POINTS = 0.01  # a same-point self-stitch may lose at most this much accuracy
IDENTIFIED_SHARE = 0.5  # layer identification passes when most sender points are identified
CONVERGED_SHARE = 0.95  # the convergence check passes when this share of cells converged


@dataclass
class Check:
    name: str
    passed: bool | None  # None: the store cannot answer it (see detail)
    value: float | None
    detail: str
    # The cells that fail it (cell_ref): a check's failure is a set of cells a reader can
    # look at.
    cells: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def cell_ref(sender: str, receiver: str, control: str, sender_point: str,
             receiver_point: str, metric: str = "stitched_accuracy") -> dict:
    """A cell of a table that fails a check (`metric`: the table it fails in)."""
    return {"sender": sender, "receiver": receiver, "control": control,
            "sender_point": sender_point, "receiver_point": receiver_point, "metric": metric}


def verdict(checks: list[Check]) -> str:
    """One line over the checks: 'all 6 checks pass', or which fail, and what is not
    computed."""
    failed = [c.name for c in checks if c.passed is False]
    unknown = [c.name for c in checks if c.passed is None]
    computed = len(checks) - len(unknown)
    line = (f"{len(failed)} of {computed} checks fail: {', '.join(failed)}" if failed
            else f"all {computed} checks pass" if computed else "no check could be computed")
    if unknown:
        line += f"; not computed ({len(unknown)}): {', '.join(unknown)}"
    return line


def load_checks(path: str | Path) -> list[Check]:
    """The checks a report wrote (checks.json beside report.html)."""
    return [Check(**c) for c in json.loads(Path(path).read_text())]


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
                   Check("self-identification (stitching)", None, None, none),
                   Check("convergence", None, None, none)]
    else:
        checks += [self_pairs(cells), controls(cells),
                   layer_identification(cells, networks, "stitched_accuracy", "stitching"),
                   self_identification(cells, "stitched_accuracy", "stitching")]
    if sims is not None:
        measures = [m for m in sims.columns if m in MEASURES]
        checks += [layer_identification(sims, networks, m, m) for m in measures]
        checks += [self_identification(sims, m, m) for m in measures]
    if cells is not None:
        checks.append(convergence(cells))
    return checks


def self_pairs(cells: pd.DataFrame) -> Check:
    """Each diagonal cell of each network's self-pair table against the network's accuracy."""
    gaps, where = {}, {}
    for s, r, c in table_keys(cells):
        if s != r or c != "trained->trained":
            continue
        table = stat_table(cells, s, r, c)
        own = float(cells[(cells.receiver == r) & (cells.control == c)]
                    .receiver_accuracy.dropna().iloc[0])
        for p in table.index.intersection(table.columns):
            if np.isfinite(table.loc[p, p]):
                gaps[f"{s}:{p}"] = own - float(table.loc[p, p])
                where[f"{s}:{p}"] = cell_ref(s, r, c, p, p)
    if not gaps:
        return Check("self-pairs", None, None, "no network is stitched into itself "
                     "(trained->trained) in the store: add self-pairs (`pairs: all`)")
    worst = max(gaps, key=lambda k: abs(gaps[k]))
    bad = [k for k, g in gaps.items() if abs(g) > SELF_PAIR_POINTS]
    return Check("self-pairs", not bad, round(100 * gaps[worst], 3),
                 f"largest difference {100 * gaps[worst]:+.2f} points below the network's "
                 f"own accuracy at {worst}; within {100 * SELF_PAIR_POINTS:g} point: "
                 f"{len(gaps) - len(bad)}/{len(gaps)} diagonal cells"
                 + (f"; outside: {', '.join(bad[:5])}" if bad else ""),
                 [where[k] for k in bad])


def controls(cells: pd.DataFrame) -> Check:
    """Per pair, the mean stitched accuracy of trained -> trained minus random -> trained over
    the cells both have, with its 95% interval: each test example's difference averaged over
    the cells, per stitch seed, (seeds, examples), and the interval of its mean over both
    (stats.crossed_interval: the seeds are sampled as the examples are, so two seeds whose
    margins disagree widen it; one seed: Student t over the examples) says whether the margin
    is more than noise."""
    margins: dict[str, tuple[float, float, float]] = {}  # pair -> (mean, low, high)
    names: dict[str, tuple[str, str]] = {}  # pair -> (sender, receiver)
    old = []  # pairs whose cells hold no per-example outcomes (stores written before)
    for s, r in sorted({(s, r) for s, r, _ in table_keys(cells)}):
        have = {c for s_, r_, c in table_keys(cells) if (s_, r_) == (s, r)}
        if not {"trained->trained", "random->trained"} <= have:
            continue
        differences = _paired_differences(cells, s, r)
        if differences is None:
            old.append(f"{s}->{r}")
            continue
        low, high = seeds_examples_interval(differences)
        margins[f"{s}->{r}"] = (float(differences.mean()), low, high)
        names[f"{s}->{r}"] = (s, r)
    if not margins:
        reason = (f"the cells of {', '.join(old)} hold no per-example outcomes (stored before "
                  "they were kept): run the sweep into a new store" if old else
                  "no pair has both trained->trained and random->trained cells: add "
                  "`random->trained` to the spec's controls")
        return Check("controls", None, None, reason)
    worst = min(margins, key=lambda k: margins[k][1])
    bad = [k for k, (_, low, _) in margins.items() if not low > 0]
    mean, low, high = margins[worst]
    failing = []  # the failing pairs' cells whose own margin's lower end is not above zero
    for pair in bad:
        s, r = names[pair]
        lows = debiased_interval(cells, s, r, "random->trained")[0]
        failing += [cell_ref(s, r, "trained->trained", sp, rp) for sp in lows.index
                    for rp in lows.columns if lows.loc[sp, rp] <= 0]  # NaN: no outcomes
    return Check("controls", not bad, round(100 * low, 3),
                 f"smallest margin of trained over random {100 * mean:+.2f} points, 95% "
                 f"interval [{100 * low:+.2f}, {100 * high:+.2f}] ({worst}); pairs above "
                 f"zero: {len(margins) - len(bad)}/{len(margins)}"
                 + (f"; not: {', '.join(bad)}" if bad else "")
                 + (f"; no outcomes stored: {', '.join(old)}" if old else ""), failing)


def _paired_differences(cells: pd.DataFrame, sender: str, receiver: str) -> np.ndarray | None:
    """(seeds, test examples): trained minus random -> trained correctness of each seed,
    averaged over the cells that hold outcomes for every seed the pair's cells have (a
    seed's row pools one fit of each cell); None when none does."""
    done = cells[cells.status == "done"]
    differences = list(paired_differences(done, sender, receiver).values())
    if not differences:
        return None
    seeds = max(len(d) for d in differences)
    return np.mean([d for d in differences if len(d) == seeds], axis=0)


def family(model: str) -> str:
    """A zoo model's family: the name before its variant (`resnet-1112` -> `resnet`); the
    variants of a family name their cut points alike."""
    return model.split("-")[0]


def identified_points(table: pd.DataFrame, larger: bool) -> tuple[int, int, int]:
    """(identified, not identifiable, rows) over the points a table has as both a row and a
    column, and whose row compares it with at least one other point (a pooled vector reaches
    no spatial point): identified when the point of the same name is the single best."""
    hits, flat, total, _ = _identify(table, larger)
    return hits, flat, total


def _identify(table: pd.DataFrame, larger: bool) -> tuple[int, int, int, list[str]]:
    """identified_points, and the points that are not identified."""
    hits = flat = total = 0
    missed = []
    for p in table.index.intersection(table.columns):
        row = table.loc[p].to_numpy(dtype=float)
        own = float(table.loc[p, p])
        finite = row[np.isfinite(row)]
        if len(finite) < 2 or not np.isfinite(own):  # no other point to tell it from
            continue
        total += 1
        if finite.max() == finite.min():  # the row does not vary: nothing to identify by
            flat += 1
            missed.append(p)
            continue
        best = finite.max() if larger else finite.min()
        hit = bool(own == best and (finite == best).sum() == 1)  # a tie is a miss
        hits += hit
        if not hit:
            missed.append(p)
    return hits, flat, total, missed


def layer_identification(cells: pd.DataFrame, networks: pd.DataFrame, metric: str,
                         label: str) -> Check:
    """Over every ordered pair of different networks of one family (one model with different
    seeds, or models whose cut points share names, as `resnet-1111` and `resnet-1112`: the
    same stage boundaries), the share of sender points whose single best receiver point by
    `metric` is the point of the same name."""
    model = {n: family(m) for n, m in zip(networks.name, networks.model, strict=False)}
    tables = [(s, r, c) for s, r, c in table_keys(cells) if c == "trained->trained"
              and s != r and model.get(s) is not None and model.get(s) == model.get(r)]
    return _identification(cells, metric, f"layer identification ({label})", tables,
                           [f"{s}->{r}" for s, r, _ in tables], "the corresponding one",
                           "no two networks of one family (trained->trained, different "
                           "networks) in the store: add a second seed of a network")


def self_identification(cells: pd.DataFrame, metric: str, label: str) -> Check:
    """Over each network's table into itself, the share of points whose single best receiver
    point by `metric` is the point itself."""
    tables = [(s, r, c) for s, r, c in table_keys(cells) if c == "trained->trained" and s == r]
    return _identification(cells, metric, f"self-identification ({label})", tables,
                           [s for s, _, _ in tables], "itself",
                           "no network is compared with itself (trained->trained) in the "
                           "store: add self-pairs (`pairs: all`)")


def _identification(cells: pd.DataFrame, metric: str, name: str, tables: list,
                    labels: list[str], what: str, missing: str) -> Check:
    """Identification summed over `tables` (sender, receiver, control)."""
    larger = MEASURES[metric].larger_is_more_similar if metric in MEASURES else True
    hits = flat = total = 0
    missed = []  # the same-name cell of each point not identified
    for s, r, c in tables:
        counts = _identify(stat_table(cells, s, r, c, metric), larger)
        hits, flat, total = hits + counts[0], flat + counts[1], total + counts[2]
        missed += [cell_ref(s, r, c, p, p, metric) for p in counts[3]]
    if not total:
        return Check(name, None, None, missing)
    share = hits / total
    passed = share >= IDENTIFIED_SHARE
    return Check(name, passed, round(share, 4),
                 f"{hits}/{total} points' single most similar point is {what}, over "
                 f"{', '.join(labels)} (passes at {IDENTIFIED_SHARE:g}; chance is about "
                 "1/points; a tie is a miss)"
                 + (f"; {flat} not identifiable (the row does not vary)" if flat else ""),
                 [] if passed else missed)


def convergence(cells: pd.DataFrame) -> Check:
    """The share of fitted cells that say they converged (stopped on a plateau after they
    moved and improved, or at a closed-form start they could not better: plato.stopping), with
    how many kept their closed form and why the others stopped."""
    fitted = cells[cells.status == "done"]
    known = fitted["converged"].dropna() if "converged" in fitted.columns else pd.Series([])
    if known.empty:
        closed = _stop_reasons(fitted)
        if closed and set(closed) <= {"closed form", "translated"}:
            return Check("convergence", None, None, "no gradient step to converge: every cell "
                         "is fitted in closed form or translated ("
                         + ", ".join(f"{n} {r}" for r, n in closed.items()) + ")")
        return Check("convergence", None, None, "no cell records whether its fit converged "
                     "(cells fitted for a fixed number of epochs)")
    share = float(known.astype(bool).mean())
    stalled = fitted.loc[known.index[~known.astype(bool)]]
    reasons = _stop_reasons(stalled)
    at_start = _stop_reasons(fitted.loc[known.index[known.astype(bool)]]).get("optimal start")
    return Check("convergence", share >= CONVERGED_SHARE, round(share, 4),
                 f"{int(known.astype(bool).sum())}/{len(known)} cells converged"
                 + (f" ({at_start} at the closed form they started from)" if at_start else "")
                 + f" (passes at {CONVERGED_SHARE:g})"
                 + (f"; the others: {', '.join(f'{n} {r}' for r, n in reasons.items())}"
                    if reasons else ""),
                 [] if share >= CONVERGED_SHARE else _distinct_refs(stalled))


def _distinct_refs(rows: pd.DataFrame) -> list[dict]:
    """The cells of these rows (several seeds of one cell: once)."""
    places = rows[["sender", "receiver", "control", "sender_point", "receiver_point"]]
    return [cell_ref(*place) for place in places.drop_duplicates().itertuples(index=False)]


def _stop_reasons(cells: pd.DataFrame) -> dict[str, int]:
    """How many cells stopped for each reason (cells stored before reasons: 'step cap',
    the only way they could fail to converge)."""
    counts: dict[str, int] = {}
    for text in cells.get("result", pd.Series([], dtype=object)):
        reason = (json.loads(text) if isinstance(text, str) else {}).get("stop_reason",
                                                                          "step cap")
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
