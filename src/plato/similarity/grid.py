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
from plato.similarity.procrustes import gram_factor

STREAMING = ("cka",)
GRAM_ONLY = ("linear_cka", "linear_cka_debiased", "rbf_cka", "procrustes",
             "procrustes_similarity", "cca", "svcca")  # pwcca needs the units themselves


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

    def frame(self, values: np.ndarray | None = None):
        """The values (or `values`) as a DataFrame, rows and columns named by cut point."""
        import pandas as pd

        return pd.DataFrame(self.values if values is None else values, index=self.rows,
                            columns=self.columns)

    def to_dict(self) -> dict:
        out = {"measure": self.measure, "rows": self.rows, "columns": self.columns,
               "examples": self.examples, "values": _json(self.values),
               "reasons": self.reasons}
        if self.permutations:
            out.update(permutations=self.permutations, null_examples=self.null_examples,
                       null_mean=_json(self.null_mean), calibrated=_json(self.calibrated),
                       p_values=_json(self.p_values))
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
        tables[m] = _pairwise(m, [a[:n] for a in mats_a], [b[:n] for b in mats_b], pa, pb,
                              config.layout, n)
    if config.permutations:
        n = min(held, config.null_examples)
        for m in measures:
            _permutation_null(tables[m], [a[:n] for a in mats_a], [b[:n] for b in mats_b],
                              config)
    return {m: tables[m] for m in measures}


def _permutation_null(table: SimilarityTable, mats_a: list[torch.Tensor],
                      mats_b: list[torch.Tensor], config: SimilarityConfig) -> None:
    """Fill `table`'s null: each cell's measure on the same n examples with B's examples
    shuffled against A's, `config.permutations` times (the same shuffles for every cell)."""
    measure, n, k = MEASURES[table.measure], len(mats_a[0]), config.permutations
    gram_only = table.measure in GRAM_ONLY
    generator = torch.Generator().manual_seed(config.seed)
    perms = [torch.randperm(n, generator=generator) for _ in range(k)]
    red_a = [_reduce(m, config.layout, gram_only) for m in mats_a]  # each layer once
    red_b = [_reduce(m, config.layout, gram_only) for m in mats_b]
    shape = (len(red_a), len(red_b))
    null_mean, calibrated, p_values = (np.full(shape, np.nan) for _ in range(3))
    for i, xa in enumerate(red_a):
        for j, xb in enumerate(red_b):
            if isinstance(xa, Score) or isinstance(xb, Score) or len(xa) != len(xb):
                continue  # undefined without a shuffle: no null either
            per = len(xb) // n  # rows per example (positions: one per spatial position)
            observed = float(measure(xa, xb))
            null = np.array([float(measure(xa, xb[_rows(p, per)])) for p in perms])
            if not (np.isfinite(observed) and np.isfinite(null).all()):
                continue
            closer = null >= observed if measure.larger_is_more_similar else null <= observed
            null_mean[i, j] = null.mean()
            calibrated[i, j] = observed - null.mean()
            p_values[i, j] = (1 + closer.sum()) / (k + 1)
    table.null_mean, table.calibrated, table.p_values = null_mean, calibrated, p_values
    table.permutations, table.null_examples = k, n


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


def _pairwise(name: str, mats_a, mats_b, pa, pb, layout: str, n: int) -> SimilarityTable:
    measure = MEASURES[name]
    gram_only = name in GRAM_ONLY
    red_a = [_reduce(m, layout, gram_only) for m in mats_a]  # each layer once
    red_b = [_reduce(m, layout, gram_only) for m in mats_b]
    values = np.full((len(pa), len(pb)), np.nan)
    reasons: list[list[str | None]] = [[None] * len(pb) for _ in pa]
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
    return SimilarityTable(name, [p.name for p in pa], [p.name for p in pb], values, reasons, n)
