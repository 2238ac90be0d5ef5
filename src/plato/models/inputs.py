"""The input a network takes, when it is not the dataset's: a network trained elsewhere was
trained on images normalised with its own mean and std (ImageNet's for most torchvision and
timm weights; CIFAR codebases differ in the third decimal place), and fed the dataset's it
loses accuracy for a reason nobody sees; and many were trained at their own resolution (224
pixels for most ImageNet weights), not the dataset's.

Plato's loaders give images normalised with the dataset's statistics. `feed_own_input`
installs on the model a child `plato_input` (an `InputAdapter`) that turns them into the
network's own normalisation, x_own = x * (std_data / std_own) + (mean_data - mean_own) /
std_own, resized to its own input size where it has one (the policy: InputAdapter), and a
forward pre-hook that applies it: `model(x)`, copies and pickles of the model
(Ray payloads) apply it. torch.fx ignores a root module's hooks, so tracing
(plato.models.traced.trace) inserts the child's call after the input: every prefix, extractor
and tapped model of the cut graph starts with it. Its buffers are not persistent: state dicts
and weight hashes are those of the network alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from plato.errors import ModelError

INPUT_MODULE = "plato_input"  # the child's name: no cut point, never in a state dict


class InputAdapter(nn.Module):
    """Images normalised with the data's mean and std (per channel) renormalised with the
    network's own (None: the data's), then resized to its own input size (None: as they come).

    The resize policy (torchvision's `Resize(shorter side)` then `CenterCrop`, on the device):
    the image is scaled by the one factor that makes it cover the target in both directions,
    max(h / H, w / W), bilinearly with antialiasing (a downscale averages, it does not alias),
    then the centre h x w is cut out. Bilinear weights sum to one, so the resize commutes with
    the per-channel renormalisation: the order does not change the result."""

    def __init__(self, data_mean: Sequence[float], data_std: Sequence[float],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 size: Sequence[int] | None = None) -> None:
        super().__init__()
        mean, std = (data_mean, data_std) if mean is None else (mean, std)
        if not len(data_mean) == len(data_std) == len(mean) == len(std):
            raise ModelError(f"the network's normalisation has {len(mean)} channels' mean and "
                             f"{len(std)} std; the data has {len(data_mean)} channels")
        if min(std) <= 0:
            raise ModelError(f"a normalisation's std must be positive, got {list(std)}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ModelError(f"an input size is (height, width) in pixels, got {list(size)}")
        own_mean, own_std = torch.tensor(mean, dtype=torch.float64), torch.tensor(
            std, dtype=torch.float64)
        data_mean_t = torch.tensor(data_mean, dtype=torch.float64)
        scale = torch.tensor(data_std, dtype=torch.float64) / own_std
        shift = (data_mean_t - own_mean) / own_std
        # (1, C, 1, 1): per channel of (B, C, H, W) images
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift.float().view(1, -1, 1, 1), persistent=False)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.data_mean = tuple(float(m) for m in data_mean)
        self.data_std = tuple(float(s) for s in data_std)
        self.renormalises = (self.mean, self.std) != (self.data_mean, self.data_std)
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def spec(self) -> dict:
        """What builds it again (a remote worker's payload): feed_own_input(model, **spec)."""
        out = {"data_mean": self.data_mean, "data_std": self.data_std, "mean": self.mean,
               "std": self.std}
        return {**out, "size": self.size} if self.size else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renormalises:
            x = x * self.scale + self.shift
        if self.size is None or tuple(x.shape[-2:]) == self.size:
            return x
        return resize(x, self.size)

    def before_forward(self, module: nn.Module, args: tuple) -> tuple:
        """The forward pre-hook: the model's first argument adapted."""
        return (self(args[0]), *args[1:])


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) images scaled to cover `size` (h, w) and centre-cropped to it."""
    height, width = x.shape[-2:]
    factor = max(size[0] / height, size[1] / width)
    scaled = (max(size[0], round(height * factor)), max(size[1], round(width * factor)))
    x = torch.nn.functional.interpolate(x, size=scaled, mode="bilinear", align_corners=False,
                                        antialias=True)
    top, left = (scaled[0] - size[0]) // 2, (scaled[1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


def feed_own_input(model: nn.Module, data_mean: Sequence[float], data_std: Sequence[float],
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   size: Sequence[int] | None = None) -> nn.Module:
    """Make `model` take images normalised with the data's statistics and see them normalised
    with its own (`mean`, `std`; None: the data's) at its own `size` (None: the data's).
    Installed once: a model fed again is refused (its prefixes and traces would apply the
    first one)."""
    if isinstance(getattr(model, INPUT_MODULE, None), InputAdapter):
        raise ModelError("this model is already fed its own input")
    adapter = InputAdapter(data_mean, data_std, mean, std, size)
    device = next(model.parameters(), torch.empty(0)).device
    model.add_module(INPUT_MODULE, adapter.to(device))
    model.register_forward_pre_hook(adapter.before_forward)
    return model


def own_input(model: nn.Module) -> InputAdapter | None:
    """The input a model was fed (feed_own_input), or None: the data's as they come."""
    found = getattr(model, INPUT_MODULE, None)
    return found if isinstance(found, InputAdapter) else None


def feed_recorded_input(model: nn.Module, recorded: dict, dataset) -> nn.Module:
    """Feed `model` the input a checkpoint records (`meta["input"]`: mean, std, size) from
    `dataset`'s images."""
    return feed_own_input(model, dataset.mean, dataset.std, recorded.get("mean"),
                          recorded.get("std"), recorded.get("size"))


# Named normalisations a network may have been trained with (`plato import --normalisation`).
PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision's, most timm
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm's Inception-style weights
}


def chosen_normalisation(model: nn.Module, channels: int, preset: str | None = None,
                         mean: Sequence[float] | None = None,
                         std: Sequence[float] | None = None
                         ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation an imported network takes: `mean` and `std` as given, a named preset
    (`dataset`: the data's own, None), else a timm model's own pretrained configuration where
    it has as many channels as the data; None: the dataset's."""
    if (mean is None) != (std is None):
        raise ModelError("give both --mean and --std (one value per channel), or neither")
    if mean is not None:
        if preset is not None:
            raise ModelError("give --normalisation or --mean/--std, not both")
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if preset == "dataset":
        return None
    if preset is not None:
        if preset not in PRESETS:
            raise ModelError(f"no normalisation '{preset}': the named ones are "
                             f"{', '.join([*PRESETS, 'dataset'])}; or give --mean and --std")
        return PRESETS[preset]
    config = getattr(model, "pretrained_cfg", None) or {}  # a timm model's
    if len(config.get("mean") or ()) == channels == len(config.get("std") or ()):
        return tuple(config["mean"]), tuple(config["std"])
    return None
