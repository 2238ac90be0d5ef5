"""Measuring a stitched network on the test split: one JSON-serialisable StitchResult."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from plato.data.datasets import Dataset
from plato.data.loader import make_loader
from plato.device import memory_format
from plato.similarity.cka import centred_gram, cka_from_grams
from plato.stitch.activations import Activations
from plato.stitch.distance import DistanceSums, receiver_gaussians
from plato.stitch.stitched import StitchedModel
from plato.stitch.threads import cell_runner

CKA_EXAMPLES = 1024  # linear CKA uses the first this-many test images (an n x n Gram matrix)
# The receiver suffix runs on at most this many examples per call: the elementwise layers of a
# batch of 1,024 CIFAR activations are memory-bound, pieces that stay in the cache are not.
SUFFIX_CHUNK = 256


@dataclass
class StitchResult:
    sender: str
    receiver: str
    sender_point: str
    receiver_point: str
    stitch: str
    objective: str
    dataset: str
    stitched_accuracy: float  # fractions in [0, 1], on the test split
    sender_accuracy: float
    receiver_accuracy: float
    normalized_accuracy: float  # stitched / receiver
    stitched_loss: float  # test cross-entropy of the stitched network
    stitch_loss: float  # the objective's final training loss
    activation_mse: float  # stitched activation vs the receiver's own, at the receiver point
    activation_cka: float  # linear CKA of the same two, on the first CKA_EXAMPLES test images
    stitch_parameters: int
    epochs: int
    seconds: float
    seed: int = 0
    sender_point_index: int = -1
    receiver_point_index: int = -1
    steps: int = 0  # SGD steps the stitch took
    examples_seen: int = 0  # training examples those steps saw
    converged: bool | None = None  # budget "converge": it stopped on a plateau after it
    #                                moved (True; plato.stopping); None: a fixed budget
    stop_reason: str | None = None  # why it stopped: plateau, step cap, stalled, diverged,
    #                                 epochs (a fixed budget), closed form (lstsq)
    holdout_curve: list | None = None  # [step, held-out loss] at each look of the rule
    # How far the stitched activations lie from the receiver's own distribution at its point
    # (plato.stitch.distance: RMS Mahalanobis per channel; its own training activations ~1),
    # and (the in-distribution level) the receiver's own test activations.
    receiver_distance: float = math.nan
    receiver_own_distance: float = math.nan
    test_examples: int = 0  # the test examples stitched_accuracy counts
    accuracy_low: float = math.nan  # its 95% interval over them (plato.stats: Wilson)
    accuracy_high: float = math.nan
    stitch_nonzero: float | None = None  # the fraction of the map's weights not zero (a
    #                                      sparse type's; None for the others)
    # Each test example right (True) or wrong, in the split's order: pairs a cell with its
    # control for a paired interval. Kept out of to_dict.
    correct: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {f.name: (None if isinstance(v, float) and math.isnan(v) else v)
                for f in fields(self) if f.name != "correct"
                for v in [getattr(self, f.name)]}


def measure_stitched(model: StitchedModel, dataset: Dataset, batch_size: int = CKA_EXAMPLES,
                     device: torch.device | str = "cpu",
                     channels_last: bool = True) -> dict:
    """Accuracy, loss, activation MSE and CKA of a stitched network on the test split, the
    distance of its stitched activations from the receiver's distribution (and of the
    receiver's own), and which test examples it got right ("correct", in the split's
    order)."""
    return measure_stitches([model], dataset, batch_size, device,
                            channels_last=channels_last)[0]


@torch.no_grad()
def measure_stitches(models: Sequence[StitchedModel], dataset: Dataset,
                     batch_size: int = CKA_EXAMPLES, device: torch.device | str = "cpu",
                     senders: Activations | None = None,
                     receivers: Activations | None = None,
                     channels_last: bool = True, cell_threads: int = 0,
                     suffix_chunk: int = SUFFIX_CHUNK) -> list[dict]:
    """`measure_stitched` for many models, the frozen networks run once per test batch.

    CKA uses the first CKA_EXAMPLES test images; the first batch holds them all, and each
    cell's Gram matrix is formed and used at once, so memory never holds every cell's outputs.
    On a CPU the cells run in `cell_threads` threads (plato.stitch.threads); the receiver
    suffix runs on at most `suffix_chunk` examples per call (speed only).
    """
    device = torch.device(device)
    layout = memory_format(channels_last)
    senders = (senders or Activations.senders(models)).to(device, layout)
    receivers = (receivers or Activations.receivers(models)).to(device, layout)
    for m in models:
        m.to(device, memory_format=layout).eval()
    points = sorted({m.receiver_point.name for m in models})
    gaussians = receiver_gaussians(receivers, dataset, points, device, channels_last)
    own = {name: DistanceSums() for name in points}
    loader = make_loader(dataset, "test", max(batch_size, CKA_EXAMPLES), device=device,
                         channels_last=channels_last)
    cells = [(m, _Sums()) for m in models]
    ckas: list[float] = []
    with cell_runner(device, len(models), cell_threads) as runner:
        for x, y in loader:
            a, t = senders(x), receivers(x)
            first = not ckas  # the first batch holds the CKA examples
            names = sorted({m.receiver_point.name for m in models}) if first else []
            grams = dict(zip(names, runner.map(lambda n, t=t: _gram(t[n]), names), strict=True))
            for name in points:
                own[name].add(gaussians[name], t[name])

            def measure(cell, a=a, t=t, y=y, grams=grams, first=first) -> float | None:
                with torch.no_grad():  # grad mode is per thread
                    m, sums = cell
                    point = m.receiver_point.name
                    out, ref = m.stitch(a[m.sender_point.name]), t[point]
                    for lo in range(0, len(y), suffix_chunk):
                        hi = lo + suffix_chunk
                        sums.add(out[lo:hi], ref[lo:hi], m.receiver_suffix(out[lo:hi]),
                                 y[lo:hi])
                        sums.distance.add(gaussians[point], out[lo:hi])
                    if not first:
                        return None
                    return cka_from_grams(_gram(out), grams[m.receiver_point.name])

            found = runner.map(measure, cells)
            if first:
                ckas = found
    return [{**sums.result(loader.num_examples), "activation_cka": cka,
             "receiver_own_distance": own[m.receiver_point.name].result()}
            for (m, sums), cka in zip(cells, ckas, strict=True)]


def _gram(x: torch.Tensor) -> torch.Tensor:
    """The centred Gram of the first CKA_EXAMPLES examples in float32 (centring and products;
    ~1e-6 relative error in the CKA). The activations carry no graph (frozen passes, or a cell
    under no_grad)."""
    return centred_gram(x[:CKA_EXAMPLES], dtype=torch.float32)


class _Sums:
    """Running sums kept on the device (no host synchronisation per batch)."""

    def __init__(self) -> None:
        self.loss_sum = self.sq_sum = 0
        self.hits: list[torch.Tensor] = []  # per example: right or wrong
        self.elements = 0
        self.distance = DistanceSums()

    def add(self, out, ref, logits, y) -> None:
        self.hits.append(logits.argmax(1) == y)
        self.loss_sum = self.loss_sum + F.cross_entropy(logits.double(), y, reduction="sum")
        # float32 differences, summed in float64: exact zeros stay zero, and no float64 copies
        # of two activation tensors per batch
        self.sq_sum = self.sq_sum + (out.float() - ref.float()).square().sum(dtype=torch.float64)
        self.elements += out.numel()

    def result(self, n: int) -> dict:
        correct = torch.cat(self.hits).cpu().numpy()
        return {
            "accuracy": int(correct.sum()) / n, "correct": correct,
            "loss": float(self.loss_sum) / n,
            "activation_mse": float(self.sq_sum) / self.elements,
            "receiver_distance": self.distance.result(),
        }
