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
from plato.device import free_memory, resolve_device
from plato.errors import PlatoError, SettingError
from plato.models import cut_graph
from plato.models.cuts import CutGraph, CutPoint
from plato.settings import (
    INT64_MAX,
    MAX_BATCH,
    SEED,
    check_choice,
    check_numbers,
    check_types,
)
from plato.similarity.base import LAYOUTS, MEASURES, Score, get_measure, undefined
from plato.similarity.cka import MinibatchCKA
from plato.similarity.held import HeldLayer, example_rows, for_measure, hold_layer, plan_groups
from plato.similarity.model_level import ModelScore, jackknife_groups, model_scores

STREAMING = ("cka",)
MAX_PERMUTATIONS = 100_000  # shuffles of a permutation null (1,000 give p-values to 0.001)
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
    # Memory the held examples may take (plato.similarity.held), in GB; None: half of what
    # the machine has free. It decides how many passes hold them, never a value.
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        check_types(self, "similarity")
        check_numbers(self, "similarity", {"batch_size": (4, MAX_BATCH),
                                           **dict.fromkeys(("examples", "collect",
                                                            "null_examples"), (4, INT64_MAX)),
                                           "permutations": (0, MAX_PERMUTATIONS),
                                           "seed": SEED})
        check_choice(self, "layout", LAYOUTS, "similarity")
        check_choice(self, "split", ("train", "test"), "similarity")
        for name in ("batch_size", "collect", "examples", "null_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 4:
                raise SettingError(name, f"similarity {name} must be at least 4 (the "
                                   "estimators need 4 examples)")
        if self.permutations < 0:
            raise SettingError("permutations", "similarity permutations must be >= 0 (0: no "
                               f"null), got {self.permutations}")
        if self.memory_gb is not None and not 0 < self.memory_gb < 2**20:
            raise SettingError("memory_gb", "similarity memory_gb must be a positive number of "
                               f"GB, got {self.memory_gb}")

    def memory_budget(self) -> int:
        """Bytes the held examples may take."""
        if self.memory_gb is not None:
            return int(self.memory_gb * 2**30)
        return free_memory(torch.device("cpu")) // 2

    def key_fields(self) -> dict:
        """The fields that name a similarity cell's result in a store: without a null, those
        of stores written before the null existed."""
        out = asdict(self)
        del out["memory_gb"]  # how the examples are held, not what is computed
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
    streaming = [m for m in measures if m in STREAMING]
    whole = [m for m in measures if m not in STREAMING]
    accumulators = {m: MinibatchCKA(config.layout) for m in streaming}
    # examples held in memory: the whole-matrix measures' and the null's
    hold = max(config.collect if whole else 0,
               config.null_examples if config.permutations else 0)
    held_measures = whole + (streaming if config.permutations else [])
    gram_only = all(m in GRAM_ONLY for m in held_measures)
    loader = make_loader(dataset, config.split, config.batch_size, device=device)
    total = min(config.examples or loader.num_examples, loader.num_examples)
    held = min(hold, total)
    layers = [(0, p) for p in pa] + [(1, p) for p in pb]  # (network, point)
    groups = plan_groups([p.shape for _, p in layers],
                         [f"{'AB'[side]} {p.name}" for side, p in layers], held, config.layout,
                         gram_only, config.memory_budget()) if held else []
    kept: dict[tuple[int, str], HeldLayer | Score] = {}
    for number, group in enumerate(groups or [[]]):
        stream = number == 0 and bool(streaming)  # the streaming measures: the first pass
        holding = [layers[k] for k in group]
        wanted = [pa if stream else [p for side, p in holding if side == 0],
                  pb if stream else [p for side, p in holding if side == 1]]
        extract = [graphs[side].extract(points) if points else None
                   for side, points in enumerate(wanted)]
        limit = total if stream else held
        raw: dict[tuple[int, str], list[torch.Tensor]] = {(s, p.name): [] for s, p in holding}
        bar = tqdm(total=limit, unit="img", leave=False, disable=not progress, file=sys.stderr,
                   desc="similarity" if number == 0 else
                   f"similarity: holding layers, pass {number + 1}/{len(groups)}")
        done = 0
        for x, _ in loader:
            if done >= limit:
                break
            x = x[: limit - done]
            acts = [ex(x) if ex is not None else {} for ex in extract]
            if stream:
                a, b = ([acts[side][p.name] for p in points] for side, points in
                        enumerate(wanted))
                for acc in accumulators.values():
                    acc.update(a, b)
            if done < held:
                for side, name in raw:
                    raw[side, name].append(acts[side][name][: held - done].float().cpu())
            done += len(x)
            bar.update(len(x))
        bar.close()
        for side, name in list(raw):  # reduced one at a time: the raw rows go as they do
            kept[side, name] = hold_layer(torch.cat(raw.pop((side, name))), config.layout,
                                          gram_only)

    tables = {}
    for m, acc in accumulators.items():
        values, reasons = acc.value()
        tables[m] = SimilarityTable(m, [p.name for p in pa], [p.name for p in pb],
                                    values.numpy(), reasons, total)  # the first pass's
    held_a = [kept.get((0, p.name)) for p in pa]
    held_b = [kept.get((1, p.name)) for p in pb]
    for m in whole:
        n = min(held, config.collect)
        tables[m] = _pairwise(m, held_a, held_b, [p.name for p in pa], [p.name for p in pb],
                              config.layout, n)
    if config.permutations:
        for m in measures:
            _permutation_null(tables[m], held_a, held_b, min(held, config.null_examples),
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
    gram_only = measure in GRAM_ONLY
    held_a, held_b = ([hold_layer(torch.as_tensor(x[:n]), config.layout, gram_only)
                       for x in layers] for layers in (layers_a, layers_b))
    table = _pairwise(measure, held_a, held_b, rows, columns, config.layout, n)
    if config.permutations:
        _permutation_null(table, held_a, held_b, min(n, config.null_examples), config)
    return table


Held = HeldLayer | Score


def _first(held: Held, n: int, gram_only: bool) -> torch.Tensor | Score:
    """A held layer's first `n` examples as a measure takes them (a Score stays itself)."""
    return held if isinstance(held, Score) else for_measure(held.first(n), gram_only)


def _permutation_null(table: SimilarityTable, held_a: list[Held], held_b: list[Held], n: int,
                      config: SimilarityConfig) -> None:
    """Fill `table`'s null: each cell's measure on the first n examples with B's examples
    shuffled against A's, `config.permutations` times (the same shuffles for every cell), the
    family's (null_family: each shuffle's most similar cell), and the model-level scores with
    their jackknife intervals (plato.similarity.model_level)."""
    measure, k = MEASURES[table.measure], config.permutations
    gram_only = table.measure in GRAM_ONLY
    generator = torch.Generator().manual_seed(config.seed)
    perms = [torch.randperm(n, generator=generator) for _ in range(k)]
    red_a = [_first(h, n, gram_only) for h in held_a]  # each layer once
    red_b = [_first(h, n, gram_only) for h in held_b]
    observed = np.full((len(red_a), len(red_b)), np.nan)
    nulls = np.full((k, len(red_a), len(red_b)), np.nan)  # (shuffle, row, column)
    for i, xa in enumerate(red_a):
        for j, xb in enumerate(red_b):
            if isinstance(xa, Score) or isinstance(xb, Score) or len(xa) != len(xb):
                continue  # undefined without a shuffle: no null either
            per = len(xb) // n  # rows per example (positions: one per spatial position)
            value = float(measure(xa, xb))
            null = np.array([float(measure(xa, xb[example_rows(p, per)])) for p in perms])
            if np.isfinite(value) and np.isfinite(null).all():
                observed[i, j], nulls[:, i, j] = value, null
    null_family(table, observed, nulls, measure)
    table.permutations, table.null_examples = k, n
    replicates = _jackknife(held_a, held_b, n, np.isfinite(observed), measure, config,
                            gram_only)
    table.scores = model_scores(observed, nulls, replicates, measure, table.rows, table.columns)


def _jackknife(held_a: list[Held], held_b: list[Held], n: int, cells: np.ndarray, measure,
               config: SimilarityConfig, gram_only: bool) -> np.ndarray:
    """(G, N, M): each of the `cells` recomputed on the first n examples with each group of
    them left out (the layers centred and reduced again without them); NaN elsewhere."""
    groups = jackknife_groups(n, config.seed)
    out = np.full((len(groups), *cells.shape), np.nan)
    for g, left_out in enumerate(groups):
        keep = torch.from_numpy(np.setdiff1d(np.arange(n), left_out))
        red_a = [for_measure(h.of(keep), gram_only) if cells[i].any() else None
                 for i, h in enumerate(held_a)]
        red_b = [for_measure(h.of(keep), gram_only) if cells[:, j].any() else None
                 for j, h in enumerate(held_b)]
        for i, j in zip(*np.nonzero(cells), strict=True):
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


def _pairwise(name: str, held_a: list[Held], held_b: list[Held], rows: list[str],
              columns: list[str], layout: str, n: int) -> SimilarityTable:
    measure = MEASURES[name]
    gram_only = name in GRAM_ONLY
    red_a = [_first(h, n, gram_only) for h in held_a]  # each layer once
    red_b = [_first(h, n, gram_only) for h in held_b]
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
