"""Whether a network takes images of a dataset's size, and the smallest size it takes.

A network built for images too small for it (a folder of 1x1 images and a cnn-3, whose three
poolings need 8x8) fails deep in its first forward pass ("Output size is too small"), after
the data is loaded and training has begun. One forward pass of one blank image, in eval mode
(no statistics updated, no randomness drawn), finds out first; where it fails, networks of
the same name and options built for larger square sizes find the smallest one that runs.
"""

from __future__ import annotations

import torch
from torch import nn

from plato.errors import ModelError

LARGEST_PROBED = 1024  # sides tried when looking for the smallest input (powers of two)


def runs_on(model: nn.Module, input_shape: tuple[int, int, int]) -> str | None:
    """None where `model` runs on one blank image of `input_shape` (C, H, W); else the first
    line of why not."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    except (RuntimeError, ValueError, IndexError) as e:
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    finally:
        model.train(was_training)
    return None


def check_input_fits(model: nn.Module, input_shape: tuple[int, int, int], data: str) -> None:
    """Refuse, in one line naming the size it needs, a model that cannot run on the images of
    `data` (a dataset's name), of `input_shape`."""
    why = runs_on(model, input_shape)
    if why is not None:
        raise cannot_run(model, input_shape, why, data)


def cannot_run(model: nn.Module, input_shape: tuple[int, int, int], why: str,
               data: str | None = None) -> ModelError:
    """The error for a model that failed (`why`) on images of `input_shape` (of the dataset
    named `data`): the smallest square size it runs on, where create_model can rebuild it at
    larger sizes."""
    name = getattr(model, "plato_name", type(model).__name__)
    channels, height, width = input_shape
    what = f"the {height}x{width} images of {data}" if data else f"images of {height}x{width}"
    needs = _smallest_side(model, channels, max(height, width))
    need = (f"it runs on {needs}x{needs} and larger" if needs else
            "give it images of a size it runs on, or build it for this size (a ViT's image "
            "size option)")
    return ModelError(f"{name} cannot run on {what} ({why[:200]}): "
                      f"{need}")


def _smallest_side(model: nn.Module, channels: int, side: int) -> int | None:
    """The smallest square side above `side` on which the model, rebuilt for it, runs: powers
    of two up to LARGEST_PROBED, then a binary search below the first that runs (a network
    that runs on a size runs on every larger one). None: no size up to LARGEST_PROBED, or a
    model create_model cannot rebuild."""
    config = getattr(model, "plato_config", None)
    if config is None:
        return None
    state = torch.random.get_rng_state()  # building draws initial weights: leave no trace
    try:
        low, high = side, 1  # low: known not to run; high: the first power of two that runs
        while high <= low:
            high *= 2
        while high <= LARGEST_PROBED and not _rebuilt_runs(model, config, channels, high):
            low, high = high, high * 2
        if high > LARGEST_PROBED:
            return None
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if _rebuilt_runs(model, config, channels, middle) else (
                middle, high)
        return high
    finally:
        torch.random.set_rng_state(state)


def _rebuilt_runs(model: nn.Module, config: dict, channels: int, side: int) -> bool:
    from plato.models.registry import create_model

    options = {k: v for k, v in config.items() if k not in ("num_classes", "input_shape")}
    shape = (channels, side, side)
    try:
        bigger = create_model(model.plato_name, num_classes=config["num_classes"],
                              input_shape=shape, **options)
    except ModelError:  # not a size this model is built for (a ViT's patches)
        return False
    return runs_on(bigger, shape) is None
