"""Does a stitch speak the receiver's language? The distance of activations from the
receiver's own activation distribution at a cut point.

A task-trained stitch can feed the receiver activations far outside anything the receiver
saw in training and still be classified well (Balogh & Jelasity 2025): high stitched
accuracy then says the receiver copes, not that the two layers represent the same thing.
`ChannelGaussian` measures how far a batch of activations lies from the receiver's own.

The receiver's activations at the point are modelled as a Gaussian over channels: on a
conv map each spatial position's channel vector is a sample (channel-wise; a (C, H, W)
map gives H * W samples per image, tokens (T, D) T samples) around that position's own mean,
with one channel covariance shared by the positions; on a vector point the vector is the sample. The
covariance is shrunk towards a scaled identity (SHRINKAGE) so that channels that are nearly
constant (dead ReLUs) do not make the distance explode. The distance reported is the root mean
squared Mahalanobis distance per channel,

    distance = sqrt(mean over samples of (x - mu)' S^-1 (x - mu) / C),

so the receiver's own training activations lie at about 1 (their own test activations a
little above), and a stitch's activations at 3 are three "standard deviations" away on
average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from plato.data.loader import make_loader

DISTRIBUTION_EXAMPLES = 2048  # training images the receiver's statistics come from
SHRINKAGE = 0.01  # covariance = (1 - s) * S + s * mean variance * I


def channel_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B * H * W, C) channel vectors; tokens (B, T, D) -> (B * T, D) (each
    token a position); (B, C) stays as it is."""
    if x.dim() == 4:
        return x.movedim(1, -1).reshape(-1, x.shape[1])  # (B*H*W, C)
    if x.dim() == 3:
        return x.reshape(-1, x.shape[2])  # (B*T, D)
    return x.reshape(len(x), -1)


class ChannelMoments:
    """Streaming float64 sums of activations: what ChannelGaussian is fitted from."""

    def __init__(self) -> None:
        self.images = 0
        self.s1: torch.Tensor | None = None  # (C, H, W) or (C,): sum over images
        self.s2: torch.Tensor | None = None  # (C, C): sum of channel-vector outer products

    def add(self, x: torch.Tensor) -> None:
        s1, rows = x.double().sum(0), channel_rows(x).double()  # rows: (N, C)
        s2 = rows.T @ rows
        self.s1, self.s2 = (s1, s2) if self.s1 is None else (self.s1 + s1, self.s2 + s2)
        self.images += len(x)

    def gaussian(self) -> ChannelGaussian:
        if self.s1 is None or self.images < 2:
            raise ValueError("a ChannelGaussian needs at least two images")
        mean = self.s1 / self.images  # (C, H, W) or (C,): one mean per position
        means = channel_rows(mean.unsqueeze(0))  # (H*W, C)
        # the channel covariance around each position's own mean, pooled over positions
        samples = self.images * len(means)
        cov = (self.s2 - self.images * means.T @ means) / (samples - len(means))
        c = cov.shape[0]
        scale = float(cov.diagonal().mean()) or 1.0  # an all-constant point: unit scale
        cov = (1 - SHRINKAGE) * cov + SHRINKAGE * scale * torch.eye(c, dtype=cov.dtype,
                                                                     device=cov.device)
        values, vectors = torch.linalg.eigh(cov)
        whitening = (vectors * values.clamp_min(1e-12 * scale).rsqrt()) @ vectors.T
        return ChannelGaussian(mean.float(), whitening.float(), samples)


class ChannelGaussian:
    """The receiver's own activations at one point: a mean per position and one channel
    covariance (of each position's channel vector around its mean)."""

    def __init__(self, mean: torch.Tensor, whitening: torch.Tensor, samples: int) -> None:
        self.mean = mean  # (C, H, W) or (C,) float32
        self.whitening = whitening  # (C, C) float32: S^-1/2, so d^2 = |(x - mu) W|^2
        self.samples = samples  # the channel vectors it was fitted from

    @classmethod
    def fit(cls, batches: Iterable[torch.Tensor]) -> ChannelGaussian:
        """From batches of the receiver's own activations, streamed: memory holds one mean
        map and a C x C sum, never the activations."""
        moments = ChannelMoments()
        for x in batches:
            moments.add(x)
        return moments.gaussian()

    def squared(self, x: torch.Tensor) -> torch.Tensor:
        """Per example (B,): the sum over its positions of the squared Mahalanobis distance
        / C, in float64."""
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"activations of shape {tuple(x.shape[1:])} against a "
                             f"distribution of shape {tuple(self.mean.shape)}")
        rows = channel_rows(x.float() - self.mean)  # (N, C)
        per_row = (rows @ self.whitening).square().sum(1, dtype=torch.float64)  # (N,)
        return per_row.view(len(x), -1).sum(1) / self.whitening.shape[0]

    def distance(self, x: torch.Tensor) -> float:
        """The root mean squared Mahalanobis distance per channel of a batch."""
        sums = DistanceSums()
        sums.add(self, x)
        return sums.result()


class DistanceSums:
    """The running sum behind `ChannelGaussian.distance`, over many test batches."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.samples = 0

    @torch.no_grad()
    def add(self, gaussian: ChannelGaussian, x: torch.Tensor) -> None:
        self.total = self.total + gaussian.squared(x).sum()
        self.samples += len(x) * channel_rows(x[:1]).shape[0]

    def result(self) -> float:
        return math.sqrt(float(self.total) / self.samples) if self.samples else math.nan


@torch.no_grad()
def receiver_gaussians(receivers, dataset, names: Iterable[str],
                       device: torch.device | str = "cpu", channels_last: bool = False,
                       examples: int = DISTRIBUTION_EXAMPLES,
                       batch_size: int = 256) -> dict[str, ChannelGaussian]:
    """The receiver's own distribution at each named point, from `examples` random training
    images (seed 0, unaugmented) in one pass: `receivers` maps a batch to {point: activation}
    (a plato.stitch.Activations)."""
    names = list(names)
    moments = {name: ChannelMoments() for name in names}
    loader = make_loader(dataset.subset(train=examples), "train", batch_size, device=device,
                         channels_last=channels_last)
    for x, _ in loader:
        out = receivers(x)
        for name in names:
            moments[name].add(out[name])
    return {name: m.gaussian() for name, m in moments.items()}
