"""What a layer knows about its input: reconstruct the image from the activation at a cut point.

Two established methods, for any cut point of any network:

    fit_decoder / invert_point   a trained decoder (up-convolutional, in the style of
                                 Dosovitskiy & Brox 2016), fitted on the training split with a
                                 pixel MSE until a held-out slice of the training split stops
                                 improving: the "stitch into the input"
    optimise_inversion           optimisation-based inversion with a total-variation prior
                                 (Mahendran & Vedaldi 2015), for a few chosen test images

Reconstruction quality is PSNR and SSIM (torchmetrics) of images in [0, 1] on the test split,
streamed (memory holds a batch, and the `images` reconstructions kept for pictures).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from tqdm.auto import tqdm

from plato.data.datasets import Dataset, Split, hold_out
from plato.data.images import as_uint8, normalised, pixels, shown_images, to_channels
from plato.data.loader import make_loader
from plato.errors import PlatoError
from plato.interpret.config import InvertConfig
from plato.models.tokens import TokenLayout, infer_layout
from plato.stopping import Fitting, StoppingRule

# ---------------------------------------------------------------------------- the decoder

class PatchGrid(nn.Module):
    """Tokens (B, T, D) -> their patch tokens as a map (B, D, gh, gw) (plato.models.tokens)."""

    def __init__(self, layout: TokenLayout) -> None:
        super().__init__()
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layout.split(x)[0]


class Decoder(nn.Module):
    """Activation (C, h, w), (C,) or tokens (T, D) -> image (c, H, W), in the dataset's
    normalised units (tokens: from their patch grid, the class token left out).

    A 3x3 conv (or, from a vector, a linear map onto a 4 x 4 grid) to `width` channels, then
    one stride-2 up-convolution (4 x 4 kernel) per factor of two to the image's size, each
    followed by a 3x3 conv, LeakyReLU(0.2) after each; a last 3x3 conv to the image's channels,
    and a bilinear resize where the sizes are not a power of two apart.
    """

    def __init__(self, activation_shape: tuple[int, ...], image_shape: tuple[int, int, int],
                 width: int = 64) -> None:
        super().__init__()
        c_img, h_img, w_img = image_shape
        self.image_size = (h_img, w_img)
        tokens = infer_layout(activation_shape[0]) if len(activation_shape) == 2 else None
        if len(activation_shape) == 1:
            start = min(4, h_img)
            self.stem = nn.Sequential(nn.Linear(activation_shape[0], width * start * start),
                                      nn.LeakyReLU(0.2),
                                      nn.Unflatten(1, (width, start, start)))
            size = start
        elif len(activation_shape) == 3 or tokens is not None:
            grid = tokens.grid_shape(activation_shape[1]) if tokens else activation_shape
            self.stem = nn.Sequential(*([PatchGrid(tokens)] if tokens else []),
                                      nn.Conv2d(grid[0], width, 3, padding=1),
                                      nn.LeakyReLU(0.2))
            size = grid[1]
        else:
            raise PlatoError(f"cannot decode an activation of shape {activation_shape}: a "
                             "cut point gives (C,), (C, H, W) or tokens with a patch grid")
        stages = max(0, math.ceil(math.log2(h_img / size))) if size < h_img else 0
        layers: list[nn.Module] = []
        channels = width
        for _ in range(stages):
            out = max(16, channels // 2)
            layers += [nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1),
                       nn.LeakyReLU(0.2), nn.Conv2d(out, out, 3, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        if not stages:  # no upsampling: refine at full size
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(channels, c_img, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(a))  # (B, c, H', W')
        if x.shape[-2:] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------- image quality

def image_quality(reconstructed: torch.Tensor, original: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image (B,): PSNR (dB) and SSIM of reconstructions against originals, both images
    with pixel values in [0, 1] (torchmetrics; SSIM with a Gaussian window of 11, or 7 on
    images smaller than 16 px)."""
    for name, x in (("reconstructions", reconstructed), ("originals", original)):
        low, high = float(x.min()), float(x.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise PlatoError(f"PSNR/SSIM need images with pixel values in [0, 1]; the {name} "
                             f"lie in [{low:.3g}, {high:.3g}]: map both to [0, 1] first "
                             "(plato.data.images.pixels undoes the dataset's "
                             "normalisation)")
    if reconstructed.shape != original.shape:
        raise PlatoError(f"reconstructions of shape {tuple(reconstructed.shape)} against "
                         f"originals of shape {tuple(original.shape)}")
    small = min(original.shape[-2:]) < 16
    psnr = peak_signal_noise_ratio(reconstructed, original, data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(reconstructed, original, data_range=1.0,
                                               reduction="none", kernel_size=7 if small else 11,
                                               sigma=1.0 if small else 1.5)
    return {"psnr": psnr, "ssim": ssim}


# ---------------------------------------------------------------------------- fitting

@dataclass
class Reconstruction:
    """One cut point's reconstructions, measured on the test split."""

    psnr: float  # mean over test images, dB
    ssim: float
    psnr_std: float
    ssim_std: float
    test_examples: int
    steps: int  # decoder steps
    converged: bool  # on a plateau after it moved (plato.stopping; False: see stop_reason)
    stop_reason: str  # plateau | step cap | stalled | diverged
    heldout_mse: float  # the decoder's best held-out pixel MSE (normalised units)
    decoder_parameters: int
    seconds: float
    shown: torch.Tensor  # (images, c, H, W) uint8: the decoder's reconstructions of shown_images
    optimised: torch.Tensor | None = None  # (images, c, H, W) uint8: optimisation's
    optimised_psnr: float = math.nan  # optimisation-based inversion, mean over the shown images
    optimised_ssim: float = math.nan

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("shown", "optimised")}


def fit_decoder(encoder: nn.Module, dataset: Dataset, config: InvertConfig | None = None,
                device: torch.device | str = "cpu", progress: bool = False,
                desc: str = "decoder") -> tuple[Decoder, dict]:
    """A decoder from `encoder`'s output (a frozen network prefix) back to its input, fitted
    on the training split with Adam and a pixel MSE until a held-out slice of the training
    split (never the test split) says it has stopped improving: the stitches' converging rule
    (plato.stopping) looks at its held-out MSE every `check_every` steps, drops its learning
    rate tenfold at its first `decays` plateaus, and stops it with its best state."""
    config = config or InvertConfig()
    device = torch.device(device)
    encoder = encoder.to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    train, held = hold_out(dataset, min(config.holdout, len(dataset.train) // 5), config.seed)
    held_x = normalised(held, dataset, device)
    with torch.no_grad():
        held_a = encoder(held_x[:1])
    torch.manual_seed(config.seed)
    decoder = Decoder(tuple(held_a.shape[1:]), dataset.input_shape, config.width).to(device)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=config.lr)

    def decay(_) -> None:  # a plateau: go on at a tenth of the rate
        for group in optimiser.param_groups:
            group["lr"] /= 10

    fit, rule = Fitting(decoder), StoppingRule(config, decay)
    first_bad = torch.tensor(-1, device=device)  # the first non-finite step, read at looks
    steps, epoch, live = 0, 0, [fit]
    bar = tqdm(total=config.max_steps, desc=desc, unit="step", disable=not progress,
               leave=False, dynamic_ncols=True)
    while live:
        loader = make_loader(train, "train", config.batch_size, device=device, train=True,
                             augment="none", seed=config.seed + epoch)
        for x, _ in loader:
            with torch.no_grad():
                a = encoder(x)
            loss = F.mse_loss(decoder(a), x)
            first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), steps, first_bad)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps += 1
            bar.update(1)
            last = steps >= config.max_steps
            if steps % config.check_every == 0 or last:
                if int(first_bad) >= 0:
                    raise PlatoError(f"the decoder's loss turned non-finite at step "
                                     f"{int(first_bad)}: lower the invert setting lr")
                look = _heldout_mse(encoder, decoder, held_x, config.batch_size)
                bar.set_postfix(heldout=f"{look:.4f}")
                live = rule.look(live, [look], steps, last)
            if not live:
                break
        epoch += 1
    bar.close()
    return decoder.eval(), {"steps": steps, "converged": fit.converged,
                            "stop_reason": fit.stop_reason, "heldout_mse": rule.lowest(fit)}


@torch.no_grad()
def _heldout_mse(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor,
                 batch_size: int) -> float:
    total = 0.0
    for lo in range(0, len(x), 4 * batch_size):
        chunk = x[lo:lo + 4 * batch_size]
        total += float(F.mse_loss(decoder(encoder(chunk)), chunk, reduction="sum"))
    return total / x.numel()


@torch.no_grad()
def measure_decoder(encoder: nn.Module, decoder: nn.Module, dataset: Dataset,
                    device: torch.device | str = "cpu", batch_size: int = 256) -> dict:
    """Mean and standard deviation over the test split of PSNR and SSIM, streamed."""
    sums = {"psnr": [0.0, 0.0], "ssim": [0.0, 0.0]}
    n = 0
    for x, _ in make_loader(dataset, "test", batch_size, device=device):
        quality = image_quality(pixels(decoder(encoder(x)), dataset), pixels(x, dataset))
        for name, values in quality.items():
            values = values.double()
            sums[name][0] += float(values.sum())
            sums[name][1] += float(values.square().sum())
        n += len(x)
    out = {"test_examples": n}
    for name, (s, sq) in sums.items():
        mean = s / n
        out[name] = mean
        out[f"{name}_std"] = math.sqrt(max(0.0, sq / n - mean * mean))
    return out


# ---------------------------------------------------------------------------- optimisation

def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Squared-gradient total variation (beta = 2) per image, averaged over pixels: (B,)."""
    dh = (x[..., 1:, :-1] - x[..., :-1, :-1]).square()
    dw = (x[..., :-1, 1:] - x[..., :-1, :-1]).square()
    return (dh + dw).mean(dim=(1, 2, 3))


def optimise_inversion(encoder: nn.Module, targets: torch.Tensor, dataset: Dataset,
                       config: InvertConfig | None = None) -> torch.Tensor:
    """Images whose activations match `targets` (B, ...): minimise the relative feature
    error |phi(x) - phi0|^2 / |phi0|^2 plus `tv_weight` times the total variation (the
    natural-image prior of Mahendran & Vedaldi 2015), by Adam from a seeded noise image, the
    pixels kept in the valid range. Returns normalised images (B, c, H, W)."""
    config = config or InvertConfig()
    device = targets.device
    mean, std = to_channels(dataset.mean, device), to_channels(dataset.std, device)
    low, high = -mean / std, (1 - mean) / std  # pixel 0 and 1, normalised
    g = torch.Generator(device="cpu").manual_seed(config.seed)
    x = (0.1 * torch.randn(len(targets), *dataset.input_shape, generator=g)).to(device)
    x.requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=config.optimise_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.optimise_steps)
    scale = targets.flatten(1).square().sum(1).clamp_min(1e-12)  # (B,)
    for _ in range(config.optimise_steps):
        feature = (encoder(x) - targets).flatten(1).square().sum(1) / scale  # (B,)
        loss = (feature + config.tv_weight * total_variation(x)).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, high), low))
    return x.detach()


# ---------------------------------------------------------------------------- one cut point

def invert_point(encoder: nn.Module, dataset: Dataset, config: InvertConfig | None = None,
                 device: torch.device | str = "cpu", progress: bool = False,
                 desc: str = "decoder") -> Reconstruction:
    """Both methods at one cut point (`encoder`: the network's prefix up to it)."""
    config = config or InvertConfig()
    device = torch.device(device)
    start = time.perf_counter()
    decoder, fit = fit_decoder(encoder, dataset, config, device, progress, desc)
    quality = measure_decoder(encoder, decoder, dataset, device)
    index = shown_images(dataset, config.images)
    x = normalised(Split(dataset.test.images[index], dataset.test.labels[index]), dataset,
                   device)
    with torch.no_grad():
        targets = encoder(x)
        shown = as_uint8(decoder(targets), dataset)
    result = Reconstruction(
        psnr=quality["psnr"], ssim=quality["ssim"], psnr_std=quality["psnr_std"],
        ssim_std=quality["ssim_std"], test_examples=quality["test_examples"],
        steps=fit["steps"], converged=fit["converged"], stop_reason=fit["stop_reason"],
        heldout_mse=fit["heldout_mse"],
        decoder_parameters=decoder.num_parameters, seconds=0.0, shown=shown)
    if config.optimise_steps:
        optimised = optimise_inversion(encoder, targets, dataset, config)
        q = image_quality(pixels(optimised, dataset), pixels(x, dataset))
        result.optimised = as_uint8(optimised, dataset)
        result.optimised_psnr = float(q["psnr"].mean())
        result.optimised_ssim = float(q["ssim"].mean())
    result.seconds = time.perf_counter() - start
    return result

