"""Saliency through stitched networks: does the stitched network look at what the receiver
looks at, or at what the sender looks at?

For one stitched cell (sender prefix -> stitch -> receiver suffix) three networks are
explained on the same test images, each toward the image's true class, with Captum:

    gradient_x_input       input x gradient of the class logit (Shrikumar et al. 2016)
    integrated_gradients   Sundararajan et al. 2017, from the dataset's mean image (0 in the
                           normalised input), `ig_steps` Gauss-Legendre steps
    grad_cam               Grad-CAM (Selvaraju et al. 2017) at the cut point: the sender's at
                           its point, the receiver's at its point, the stitched network's at
                           the stitch's output; upsampled (bilinear) to the image

An input map is |attribution| summed over colour channels, (H, W) per image.

    agreement     per image, Spearman's rank correlation of the stitched network's map with
                  the receiver's (and with the sender's; and the sender's with the
                  receiver's, the baseline); mean over the images
    faithfulness  the deletion curve (Petsiuk et al. 2018): the most salient pixels first
                  set to the mean image, in `deletion_steps` equal steps, the class
                  probability after each; its area (lower: the map found what the network
                  uses), beside the same area for a random deletion order
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam
from scipy.stats import rankdata
from torch import nn

from plato.data.datasets import Dataset, Split
from plato.data.images import normalised, shown_images
from plato.errors import PlatoError
from plato.interpret.config import METHODS, SaliencyConfig
from plato.models.tokens import infer_layout

NUMBERS = ("agreement_receiver", "agreement_sender", "agreement_sender_receiver",
           "deletion_sender", "deletion_receiver", "deletion_stitched", "deletion_random_order")


class CutNetwork(nn.Module):
    """prefix -> middle -> suffix, with `middle`'s output the cut point a layer method reads:
    a network split at a point (middle = identity), or a stitched network (middle = the
    stitch)."""

    def __init__(self, prefix: nn.Module, middle: nn.Module, suffix: nn.Module) -> None:
        super().__init__()
        self.prefix, self.middle, self.suffix = prefix, middle, suffix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.middle(self.prefix(x)))


def networks_of(stitched: nn.Module) -> dict[str, CutNetwork]:
    """The sender, the receiver and the stitched network of a plato.stitch.StitchedModel, each
    with its cut point marked; the frozen parts shared, nothing copied."""
    return {
        "sender": CutNetwork(stitched.sender_prefix, nn.Identity(), stitched.sender_suffix),
        "receiver": CutNetwork(stitched.receiver_prefix, nn.Identity(),
                               stitched.receiver_suffix),
        "stitched": CutNetwork(stitched.sender_prefix, stitched.stitch,
                               stitched.receiver_suffix),
    }


@torch.enable_grad()
def attribution_maps(network: CutNetwork, x: torch.Tensor, target: torch.Tensor, method: str,
                     config: SaliencyConfig) -> torch.Tensor:
    """(B, H, W) float maps of `method` for images x (B, C, H, W) toward classes `target`."""
    network.eval()
    inputs = x.detach().clone().requires_grad_(True)
    if method == "gradient_x_input":
        attr = InputXGradient(network).attribute(inputs, target=target)
    elif method == "integrated_gradients":
        attr = IntegratedGradients(network).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=config.ig_steps,
            internal_batch_size=config.batch_size * 4)
    elif method == "grad_cam":
        with torch.no_grad():
            shape = network.middle(network.prefix(x[:1])).shape
        if len(shape) == 3:  # tokens: Grad-CAM on their patch grid (class token dropped)
            return _token_grad_cam(network, inputs, target)
        if len(shape) != 4:
            raise PlatoError(f"grad_cam needs a spatial cut point, and this one gives a vector "
                             f"of shape {tuple(shape[1:])}: choose a conv point, or the methods "
                             "gradient_x_input and integrated_gradients")
        cam = LayerGradCam(network, network.middle).attribute(inputs, target=target,
                                                               relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[:, 0].detach()
    else:
        raise PlatoError(f"unknown saliency method '{method}': choose from "
                         f"{', '.join(METHODS)}")
    return attr.detach().abs().sum(1)  # (B, H, W)


def _token_grad_cam(network: CutNetwork, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at a token point: the patch tokens as a (D, gh, gw) map (the common practice for
    ViTs; class and register tokens dropped), channel weights the mean gradient over the grid."""
    with torch.enable_grad():
        tokens = network.middle(network.prefix(x))
        layout = infer_layout(tokens.shape[1])
        if layout is None:
            raise PlatoError(f"grad_cam needs a patch grid, and this token point's "
                             f"{tokens.shape[1]} tokens make none")
        logits = network.suffix(tokens)
        chosen = logits.gather(1, target.view(-1, 1)).sum()
        grads, = torch.autograd.grad(chosen, tokens)
    act, grad = layout.split(tokens.detach())[0], layout.split(grads)[0]  # (B, D, gh, gw)
    cam = (grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True).clamp_min(0)
    return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear",
                         align_corners=False)[:, 0]


def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per image: Spearman's rank correlation of two (B, H, W) maps (ties ranked by their
    mean rank); NaN where either map is constant."""
    ra = rankdata(a.flatten(1).double().cpu().numpy(), axis=1)
    rb = rankdata(b.flatten(1).double().cpu().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), np.nan)


@torch.no_grad()
def deletion_curve(network: nn.Module, x: torch.Tensor, target: torch.Tensor,
                   order: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps + 1) class probabilities as the pixels are deleted in `order` (B, H*W), most
    important first: after k steps the first k/steps of them are set to 0 (the mean image)."""
    b, _, h, w = x.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))  # (B, H*W)
    probs = []
    for k in range(steps + 1):
        keep = (rank >= round(k * h * w / steps)).view(b, 1, h, w)
        probs.append(network(x * keep).softmax(1).gather(1, target[:, None])[:, 0])
    return torch.stack(probs, 1)


def deletion_area(curve: torch.Tensor) -> torch.Tensor:
    """Per image: the area under a deletion curve over the fraction deleted, in [0, 1]."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def usable_methods(methods: Sequence[str], sender_point, receiver_point,
                   strict: bool = True) -> list[str]:
    """The methods that can explain a cell between these cut points: grad_cam needs both to be
    spatial; where one is a vector, `strict` refuses with the reason, else grad_cam is left
    out."""
    vectors = [p for p in (sender_point, receiver_point) if len(p.shape) == 1 or (
        len(p.shape) == 2 and infer_layout(p.shape[0]) is None)]
    if "grad_cam" not in methods or not vectors:
        return list(methods)
    if strict:
        raise PlatoError(f"grad_cam needs spatial cut points, and {vectors[0].name} is a vector "
                         f"of shape {tuple(vectors[0].shape)}: choose conv points, or the "
                         "methods integrated_gradients and gradient_x_input")
    return [m for m in methods if m != "grad_cam"]


@dataclass
class SaliencyResult:
    """One stitched cell's saliency, per method: agreement and faithfulness."""

    images: int
    methods: dict = field(default_factory=dict)  # method -> {number name: value}
    shown: dict = field(default_factory=dict)  # (method, role) -> (n, H, W) float16 maps

    def headline(self) -> dict:
        """The first method's numbers, flat: what a sweep stores as metrics."""
        first = next(iter(self.methods.values()))
        return {"saliency_agreement": first["agreement_receiver"],
                "saliency_agreement_sender": first["agreement_sender"],
                "deletion_area": first["deletion_stitched"]}

    def to_dict(self) -> dict:
        """Flat and JSON-clean: method_number -> value, None where not computable."""
        return {"images": self.images,
                **{f"{m}_{k}": None if isinstance(v, float) and math.isnan(v) else v
                   for m, numbers in self.methods.items() for k, v in numbers.items()}}


def explain_stitch(stitched: nn.Module, dataset: Dataset, config: SaliencyConfig | None = None,
                   device: torch.device | str = "cpu", strict: bool = True) -> SaliencyResult:
    """Saliency of the sender, the receiver and the stitched network of `stitched` (a
    StitchedModel) on the first `images` test images (shown_images' order: a class each
    first), batch by batch: memory holds a batch's maps and the `shown` ones for pictures.

    grad_cam needs spatial cut points: where one is a vector, `strict` refuses the cell with
    the reason, else grad_cam's numbers are NaN for it and the other methods go on."""
    config = config or SaliencyConfig()
    methods = usable_methods(config.methods, stitched.sender_point, stitched.receiver_point,
                             strict)
    device = torch.device(device)
    stitched = stitched.to(device).eval()
    nets = networks_of(stitched)
    index = shown_images(dataset, config.images)
    x_all = normalised(Split(dataset.test.images[index], dataset.test.labels[index]), dataset,
                       device)
    y_all = dataset.test.labels[index].to(device)
    g = torch.Generator().manual_seed(config.seed)
    sums: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
    result = SaliencyResult(images=len(index))
    for lo in range(0, len(index), config.batch_size):
        x, y = x_all[lo:lo + config.batch_size], y_all[lo:lo + config.batch_size]
        for method in methods:
            maps = {role: attribution_maps(net, x, y, method, config)
                    for role, net in nets.items()}
            found = sums[method]
            pairs = {"agreement_receiver": ("stitched", "receiver"),
                     "agreement_sender": ("stitched", "sender"),
                     "agreement_sender_receiver": ("sender", "receiver")}
            for name, (a, b) in pairs.items():
                found.setdefault(name, []).append(rank_agreement(maps[a], maps[b]))
            for role, net in nets.items():
                order = maps[role].flatten(1).argsort(dim=1, descending=True, stable=True)
                curve = deletion_curve(net, x, y, order, config.deletion_steps)
                found.setdefault(f"deletion_{role}", []).append(
                    deletion_area(curve).cpu().numpy())
            shuffled = torch.stack([torch.randperm(order.shape[1], generator=g)
                                    for _ in range(len(x))]).to(device)
            curve = deletion_curve(nets["stitched"], x, y, shuffled, config.deletion_steps)
            found.setdefault("deletion_random_order", []).append(
                deletion_area(curve).cpu().numpy())
            if lo == 0:
                for role, m in maps.items():
                    result.shown[(method, role)] = m[:config.shown].cpu().to(torch.float16)
    for method, found in sums.items():
        numbers = {}
        for name, parts in found.items():
            values = np.concatenate(parts)
            finite = values[np.isfinite(values)]
            numbers[name] = float(finite.mean()) if finite.size else float("nan")
            if name.startswith("agreement"):
                numbers[f"{name}_std"] = float(finite.std()) if finite.size else float("nan")
                numbers[f"{name}_n"] = int(finite.size)
        result.methods[method] = numbers
    # in the configured order (the first is the headline); NaN where a method cannot be
    # computed (grad_cam at a vector point)
    result.methods = {m: result.methods.get(m, dict.fromkeys(NUMBERS, float("nan")))
                      for m in config.methods}
    return result
