"""Every cut point of one network against every cut point of another, in one pass over the data.

Each batch runs both networks once (one traced pass per network returns all their points).
Streaming measures (`cka`, the minibatch CKA) update an (N, M) accumulator on the device with
a few matrix products per batch and no host synchronisation, so memory stays bounded however
much data flows through. The other measures need whole matrices: they use the first
`collect` examples, and each layer is centred and reduced once (to a factor with the same
Gram matrix, at most n columns) before the pairs are compared.

Rows are network A's points, columns network B's: the orientation of the stitching tables
(rows = sender points).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from plato.data.datasets import Dataset
from plato.data.loader import make_loader
from plato.device import resolve_device
from plato.errors import PlatoError, SettingError
from plato.models import cut_graph
from plato.models.cuts import CutGraph, CutPoint
from plato.settings import check_choice, check_types
from plato.similarity.base import LAYOUTS, MEASURES, Score, as_matrix, get_measure, undefined
from plato.similarity.cka import MinibatchCKA
from plato.similarity.model_level import ModelScore, jackknife_groups, model_scores
from plato.similarity.procrustes import gram_factor

STREAMING = ("cka",)
GRAM_ONLY = ("linear_cka", "linear_cka_debiased", "rbf_cka", "procrustes",
             "procrustes_similarity", "cca", "svcca", "mutual_knn")  # pwcca needs the units


@dataclass
class SimilarityConfig:
    """How a similarity grid reads the data."""

    layout: str = "flatten"  # conv activations: flatten | positions | pool (similarity.base)
    batch_size: int = 256  # examples per batch; the minibatch of `cka`
    examples: int | None = None  # examples streamed (None: the whole split)
    collect: int = 2048  # examples the whole-matrix measures hold in memory
    split: str = "test"  # test | train
    permutations: int = 0  # permutation null: shuffles of B's examples against A's (0: none)
    null_examples: int = 512  # the first this-many examples the null is computed on
    seed: int = 0  # of the permutations

    def __post_init__(self) -> None:
        check_types(self, "similarity")
        check_choice(self, "layout", LAYOUTS, "similarity")
        check_choice(self, "split", ("train", "test"), "similarity")
        for name in ("batch_size", "collect", "examples", "null_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 4:
                raise SettingError(name, f"similarity {name} must be at least 4 (the "
                                   "estimators need 4 examples)")
        if self.permutations < 0:
            raise SettingError("permutations", "similarity permutations must be >= 0 (0: no "
                               f"null), got {self.permutations}")

    def key_fields(self) -> dict:
        """The fields that name a similarity cell's result in a store: without a null, those
        of stores written before the null existed."""
        out = asdict(self)
        if not self.permutations:
            for name in ("permutations", "null_examples", "seed"):
                del out[name]
        return out


@dataclass
class SimilarityTable:
    measure: str
    rows: list[str]  # network A's cut points
    columns: list[str]  # network B's cut points
    values: np.ndarray  # (N, M) float64; NaN where undefined
    reasons: list[list[str | None]]  # why a cell is NaN
    examples: int  # examples the measure saw
    # The permutation null (when asked for): on the first `null_examples` examples, the
    # measure with B's examples shuffled `permutations` times against A's.
    null_mean: np.ndarray | None = None  # (N, M) the null's mean
    calibrated: np.ndarray | None = None  # (N, M) the value on those examples - null_mean
    p_values: np.ndarray | None = None  # (N, M) (1 + shuffles at least as similar) / (k + 1)
    permutations: int = 0
    null_examples: int = 0
    # The family over every cell: the same shuffles' most similar cell, once per shuffle
    # (Westfall & Young's single-step max-T, 1993): a cell's family-wise p-value, the
    # threshold no cell of an unrelated pair passes 95% of the time, and the value rescaled
    # to 0 at its null's mean and 1 at identity.
    fw_p_values: np.ndarray | None = None  # (N, M) (1 + shuffles whose best >= it) / (k + 1)
    fw_threshold: float = math.nan  # the 95% quantile of the shuffles' best cell
    rescaled: np.ndarray | None = None  # (N, M) (value - null_mean) / (identity - null_mean)
    null_best: np.ndarray | None = None  # (k,) each shuffle's most similar cell
    observed: np.ndarray | None = None  # (N, M) the values on the null's examples
    chance: float | None = None  # the measure's mean for unrelated data (Measure.chance)
    # One number for the pair of networks (plato.similarity.model_level), with the null.
    scores: dict[str, ModelScore] | None = None  # max, depth_mean

    def frame(self, values: np.ndarray | None = None):
        """The values (or `values`) as a DataFrame, rows and columns named by cut point."""
        import pandas as pd

        return pd.DataFrame(self.values if values is None else values, index=self.rows,
                            columns=self.columns)

    def to_dict(self) -> dict:
        out = {"measure": self.measure, "rows": self.rows, "columns": self.columns,
               "examples": self.examples, "values": _json(self.values),
               "reasons": self.reasons, "chance": self.chance}
        if self.permutations:
            out.update(permutations=self.permutations, null_examples=self.null_examples,
                       null_mean=_json(self.null_mean), calibrated=_json(self.calibrated),
                       p_values=_json(self.p_values), fw_p_values=_json(self.fw_p_values),
                       fw_threshold=None if math.isnan(self.fw_threshold)
                       else float(self.fw_threshold), rescaled=_json(self.rescaled),
                       scores={k: v.to_dict() for k, v in (self.scores or {}).items()})
        return out


def _json(values: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in values]


def _points(graph: CutGraph, points: Sequence | None, granularity: str) -> list[CutPoint]:
    if points is None:
        return graph.points(granularity)
    return [graph.point(p, granularity) for p in points]


@torch.no_grad()
def similarity_grid(
    net_a: nn.Module,
    net_b: nn.Module,
    dataset: Dataset,
    measures: Sequence[str] = ("cka",),
    config: SimilarityConfig | None = None,
    *,
    points_a: Sequence | None = None,
    points_b: Sequence | None = None,
    granularity: str = "block",
    device: str | torch.device = "auto",
    graphs: tuple[CutGraph, CutGraph] | None = None,
    progress: bool = False,
) -> dict[str, SimilarityTable]:
    """The (N, M) table of each measure over all cut-point pairs of two networks.

    `config.examples` caps the examples streamed (default: the whole split); `config.collect`
    caps those the whole-matrix measures hold in memory. `cka` is minibatch CKA over batches
    of `config.batch_size`.
    """
    from tqdm import tqdm

    config = config or SimilarityConfig()
    for m in measures:
        get_measure(m)
    device = resolve_device(device)
    graphs = graphs or (cut_graph(net_a), cut_graph(net_b))
    pa, pb = _points(graphs[0], points_a, granularity), _points(graphs[1], points_b, granularity)
    for net in (net_a, net_b):
        net.to(device).eval()
    extract_a, extract_b = graphs[0].extract(pa), graphs[1].extract(pb)
    streaming = [m for m in measures if m in STREAMING]
    whole = [m for m in measures if m not in STREAMING]
    accumulators = {m: MinibatchCKA(config.layout) for m in streaming}
    held_a: list[list[torch.Tensor]] = [[] for _ in pa]
    held_b: list[list[torch.Tensor]] = [[] for _ in pb]
    # examples held in memory: the whole-matrix measures' and the null's
    hold = max(config.collect if whole else 0,
               config.null_examples if config.permutations else 0)
    seen = held = 0
    loader = make_loader(dataset, config.split, config.batch_size, device=device)
    total = min(config.examples or loader.num_examples, loader.num_examples)
    bar = tqdm(total=total, desc="similarity", unit="img", leave=False, disable=not progress,
               file=sys.stderr)
    for x, _ in loader:
        if seen >= total:
            break
        x = x[: total - seen]
        acts_a, acts_b = extract_a(x), extract_b(x)
        a = [acts_a[p.name] for p in pa]
        b = [acts_b[p.name] for p in pb]
        for acc in accumulators.values():
            acc.update(a, b)
        if held < hold:
            take = min(hold - held, len(x))
            for store, reps in ((held_a, a), (held_b, b)):
                for i, r in enumerate(reps):
                    store[i].append(r[:take].float().cpu())
            held += take
        seen += len(x)
        bar.update(len(x))
    bar.close()

    tables = {}
    for m, acc in accumulators.items():
        values, reasons = acc.value()
        tables[m] = SimilarityTable(m, [p.name for p in pa], [p.name for p in pb],
                                    values.numpy(), reasons, seen)
    mats_a = [torch.cat(h) if h else None for h in held_a]
    mats_b = [torch.cat(h) if h else None for h in held_b]
    for m in whole:
        n = min(held, config.collect)
        tables[m] = _pairwise(m, [a[:n] for a in mats_a], [b[:n] for b in mats_b],
                              [p.name for p in pa], [p.name for p in pb], config.layout, n)
    if config.permutations:
        n = min(held, config.null_examples)
        for m in measures:
            _permutation_null(tables[m], [a[:n] for a in mats_a], [b[:n] for b in mats_b],
                              config)
    return {m: tables[m] for m in measures}


def similarity_table(measure: str, layers_a: Sequence[torch.Tensor],
                     layers_b: Sequence[torch.Tensor], config: SimilarityConfig | None = None,
                     rows: Sequence[str] | None = None,
                     columns: Sequence[str] | None = None) -> SimilarityTable:
    """The table of one whole-matrix measure between activations already in hand (each layer
    (examples, ...)), with its permutation null where `config.permutations` asks: what
    `similarity_grid` computes from two networks' cut points."""
    config = config or SimilarityConfig()
    if get_measure(measure).name in STREAMING:
        raise PlatoError(f"'{measure}' streams over batches: give a whole-matrix measure")
    rows = list(rows or [f"a{i}" for i in range(len(layers_a))])
    columns = list(columns or [f"b{j}" for j in range(len(layers_b))])
    n = min(len(x) for x in (*layers_a, *layers_b))
    table = _pairwise(measure, [x[:n] for x in layers_a], [x[:n] for x in layers_b], rows,
                      columns, config.layout, n)
    if config.permutations:
        m = min(n, config.null_examples)
        _permutation_null(table, [x[:m] for x in layers_a], [x[:m] for x in layers_b], config)
    return table


def _permutation_null(table: SimilarityTable, mats_a: list[torch.Tensor],
                      mats_b: list[torch.Tensor], config: SimilarityConfig) -> None:
    """Fill `table`'s null: each cell's measure on the same n examples with B's examples
    shuffled against A's, `config.permutations` times (the same shuffles for every cell), the
    family's (null_family: each shuffle's most similar cell), and the model-level scores with
    their jackknife intervals (plato.similarity.model_level)."""
    measure, n, k = MEASURES[table.measure], len(mats_a[0]), config.permutations
    gram_only = table.measure in GRAM_ONLY
    generator = torch.Generator().manual_seed(config.seed)
    perms = [torch.randperm(n, generator=generator) for _ in range(k)]
    red_a = [_reduce(m, config.layout, gram_only) for m in mats_a]  # each layer once
    red_b = [_reduce(m, config.layout, gram_only) for m in mats_b]
    observed = np.full((len(red_a), len(red_b)), np.nan)
    nulls = np.full((k, len(red_a), len(red_b)), np.nan)  # (shuffle, row, column)
    for i, xa in enumerate(red_a):
        for j, xb in enumerate(red_b):
            if isinstance(xa, Score) or isinstance(xb, Score) or len(xa) != len(xb):
                continue  # undefined without a shuffle: no null either
            per = len(xb) // n  # rows per example (positions: one per spatial position)
            value = float(measure(xa, xb))
            null = np.array([float(measure(xa, xb[_rows(p, per)])) for p in perms])
            if np.isfinite(value) and np.isfinite(null).all():
                observed[i, j], nulls[:, i, j] = value, null
    null_family(table, observed, nulls, measure)
    table.permutations, table.null_examples = k, n
    replicates = _jackknife(mats_a, mats_b, np.isfinite(observed), measure, config, gram_only)
    table.scores = model_scores(observed, nulls, replicates, measure, table.rows, table.columns)


def _jackknife(mats_a: list[torch.Tensor], mats_b: list[torch.Tensor], cells: np.ndarray,
               measure, config: SimilarityConfig, gram_only: bool) -> np.ndarray:
    """(G, N, M): each of the `cells` recomputed with each group of examples left out (the
    layers centred and reduced again without them); NaN elsewhere."""
    n = len(mats_a[0])
    groups = jackknife_groups(n, config.seed)
    out = np.full((len(groups), *cells.shape), np.nan)
    for g, left_out in enumerate(groups):
        keep = torch.from_numpy(np.setdiff1d(np.arange(n), left_out))
        red_a = [_reduce(m[keep], config.layout, gram_only) if cells[i].any() else None
                 for i, m in enumerate(mats_a)]
        red_b = [_reduce(m[keep], config.layout, gram_only) if cells[:, j].any() else None
                 for j, m in enumerate(mats_b)]
        for i, j in zip(*np.nonzero(cells), strict=True):
            if not isinstance(red_a[i], Score) and not isinstance(red_b[j], Score):
                out[g, i, j] = float(measure(red_a[i], red_b[j]))
    return out


def null_family(table: SimilarityTable, observed: np.ndarray, nulls: np.ndarray,
                measure) -> None:
    """From each cell's value on the null's examples (N, M) and its shuffled values (k, N, M;
    NaN where undefined): the per-cell null (mean, calibrated difference, p-value) and the
    family's over every cell (Westfall & Young 1993, single-step max-T): each shuffle's most
    similar cell, the family-wise p-value of each cell against them, their 95% quantile, and
    each value rescaled to 0 at its null's mean and 1 at the measure's identity."""
    k = len(nulls)
    larger = measure.larger_is_more_similar
    with np.errstate(invalid="ignore", divide="ignore"):
        null_mean = nulls.mean(0)  # NaN where undefined
        closer = (nulls >= observed) if larger else (nulls <= observed)
        p_values = np.where(np.isfinite(null_mean), (1 + closer.sum(0)) / (k + 1), np.nan)
        defined = np.isfinite(nulls).all(0)
        best = np.array([(np.max if larger else np.min)(shuffle[defined])
                         if defined.any() else np.nan for shuffle in nulls])  # (k,)
        beats = (best[:, None, None] >= observed) if larger else (best[:, None, None] <= observed)
        fw_p = np.where(defined, (1 + beats.sum(0)) / (k + 1), np.nan)
        rescaled = (observed - null_mean) / (measure.identity - null_mean)
    table.null_mean, table.calibrated, table.p_values = null_mean, observed - null_mean, p_values
    table.fw_p_values, table.rescaled, table.null_best, table.observed = (
        fw_p, rescaled, best, observed)
    table.fw_threshold = float(np.quantile(best, 0.95 if larger else 0.05)) \
        if np.isfinite(best).all() and k else math.nan


def _rows(perm: torch.Tensor, per: int) -> torch.Tensor:
    """The row order of a matrix with `per` consecutive rows per example, examples permuted."""
    return (perm[:, None] * per + torch.arange(per)).reshape(-1)  # (n * per,)


def _reduce(rep: torch.Tensor, layout: str, gram_only: bool) -> torch.Tensor | Score:
    """A layer's matrix, centred, and reduced to a Gram factor where the measure allows."""
    try:
        m = as_matrix(rep, layout)
    except PlatoError as e:
        return undefined(str(e))
    m = m - m.mean(0, keepdim=True)
    return gram_factor(m) if gram_only and bool(torch.isfinite(m).all()) else m


def _pairwise(name: str, mats_a, mats_b, rows: list[str], columns: list[str], layout: str,
              n: int) -> SimilarityTable:
    measure = MEASURES[name]
    gram_only = name in GRAM_ONLY
    red_a = [_reduce(m, layout, gram_only) for m in mats_a]  # each layer once
    red_b = [_reduce(m, layout, gram_only) for m in mats_b]
    values = np.full((len(rows), len(columns)), np.nan)
    reasons: list[list[str | None]] = [[None] * len(columns) for _ in rows]
    for i, xa in enumerate(red_a):
        for j, xb in enumerate(red_b):
            if isinstance(xa, Score) or isinstance(xb, Score):
                score = xa if isinstance(xa, Score) else xb
            elif len(xa) != len(xb):
                score = undefined(f"different numbers of rows ({len(xa)} vs {len(xb)}): "
                                  f"layout '{layout}' needs equal spatial sizes")
            else:
                score = measure(xa, xb)
            values[i, j], reasons[i][j] = float(score), score.reason
    table = SimilarityTable(name, rows, columns, values, reasons, n)
    table.chance = measure.chance(n) if measure.chance else None
    return table
