"""Training networks: a `Recipe` dataclass, `train()`, `evaluate()`, and `train_and_save()`
(train a zoo model and write its checkpoint)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plato.checkpoint import Checkpoint, save_checkpoint
from plato.data.datasets import Dataset, Split
from plato.data.loader import AUGMENT_PRESETS, Augment, DeviceLoader, make_loader
from plato.device import autocast, resolve_device
from plato.errors import PlatoError, SettingError, TrainingError
from plato.models import create_model
from plato.models.fits import check_input_fits
from plato.settings import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LR,
    SEED,
    check_choice,
    check_numbers,
    check_types,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Recipe:
    """How a network is trained (how a stitch is fitted: plato.stitch.StitchConfig)."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # examples per step
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adam (AdamW)
    lr: float | None = None  # peak learning rate (None: 0.1 x batch/256 for sgd, 1e-3 adam)
    schedule: str = "cosine"  # cosine (linear warmup, cosine decay) | onecycle | constant
    warmup_epochs: float = 1.0  # epochs of linear warmup, for cosine
    weight_decay: float = 5e-4  # on conv and linear weights, not on BatchNorm or biases
    label_smoothing: float = 0.0  # of the cross-entropy targets
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    augment: str = "auto"  # data.Augment preset: auto = crop+flip for colour images >= 32 px
    seed: int = 0  # initialisation, data order and augmentation
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        check_types(self, "recipe")
        check_numbers(self, "recipe", {
            "epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH), "lr": (0, MAX_LR),
            "warmup_epochs": (0, MAX_EPOCHS), "weight_decay": (0, 1), "seed": SEED})
        if not 0 <= self.label_smoothing < 1:  # 1: every target smoothed away, no label left
            raise SettingError("label_smoothing", "recipe label_smoothing must be in [0, 1), "
                               f"got {self.label_smoothing}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("precision", PRECISIONS), ("augment", AUGMENT_PRESETS)):
            check_choice(self, name, allowed, "recipe")
        if self.lr is not None and not self.lr > 0:
            raise SettingError("lr", f"recipe lr must be a positive number, got {self.lr}")

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 1e-3

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    test_accuracy: float
    test_loss: float
    train_accuracy: float  # on the augmented batches of the last epoch
    train_loss: float
    epochs: int
    seconds: float
    images_per_second: float
    history: list[dict] = field(default_factory=list)  # one row per epoch

    def to_dict(self) -> dict:
        return asdict(self)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The optimiser's two groups: decayed weights, and the rest (undecayed)."""
    decay, no_decay = [], []
    # Parameters a model names as not decayed (timm's convention: a ViT's position embedding
    # and class token), then BN weights and biases (1-D).
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and name not in skip else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _lr_factor(recipe: Recipe, total_steps: int, steps_per_epoch: int):
    """Multiplier of the peak lr at each step."""
    warmup = int(recipe.warmup_epochs * steps_per_epoch)

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    def onecycle(step: int) -> float:  # linear up for 30% of the steps, linear down to 0
        peak = max(1, int(0.3 * total_steps))
        return (step + 1) / peak if step < peak else max(0.0, (total_steps - step) / (
            total_steps - peak))

    return {"cosine": cosine, "onecycle": onecycle, "constant": lambda step: 1.0}[recipe.schedule]


# (model, images, labels) -> (logits, loss): what a training step minimises.
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def train(model: nn.Module, dataset: Dataset, recipe: Recipe | None = None,
          progress: bool = True, objective: Objective | None = None,
          extra: nn.Module | None = None) -> TrainResult:
    """Train `model` in place on `dataset`; evaluate on its test split after every epoch.

    `objective` replaces the cross-entropy on the labels (distillation); `extra` holds
    modules trained beside the model (its optimiser groups, its device, train mode)."""
    from tqdm import tqdm

    recipe = recipe or Recipe()
    device = resolve_device(recipe.device)
    torch.manual_seed(recipe.seed)
    model.to(device)
    check_input_fits(model, dataset.input_shape, dataset.name)
    if objective is None:
        def objective(model, x, y):
            logits = model(x)
            return logits, F.cross_entropy(logits.float(), y,
                                           label_smoothing=recipe.label_smoothing)
    loader = make_loader(dataset, "train", recipe.batch_size, device=device, train=True,
                         augment=recipe.augment, seed=recipe.seed)
    steps_per_epoch = len(loader)
    total = recipe.epochs * steps_per_epoch
    groups = param_groups(model, recipe.weight_decay)
    if extra is not None:
        extra.to(device).train()
        for group, more in zip(groups, param_groups(extra, recipe.weight_decay), strict=True):
            group["params"] += more["params"]
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=recipe.peak_lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=recipe.peak_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(recipe, total, steps_per_epoch))

    history, start, step = [], time.perf_counter(), 0
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, leave=False,
               file=sys.stderr)
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        # Sums stay on the device: no host sync per step on a GPU.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen, first_bad = 0, torch.full((), -1, device=device, dtype=torch.int64)
        epoch_start = time.perf_counter()
        for x, y in loader:
            with autocast(device, recipe.precision):
                logits, loss = objective(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bad = ~torch.isfinite(loss.detach())
            first_bad = torch.where(bad & (first_bad < 0), step + 1, first_bad)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            step += 1
            if step % 25 == 0 or step == total:
                _check_finite(first_bad, epoch)
                rate = seen / (time.perf_counter() - epoch_start)
                bar.set_postfix(epoch=f"{epoch}/{recipe.epochs}",
                                loss=f"{loss_sum.item() / seen:.3f}",
                                acc=f"{correct.item() / seen:.3f}", img_s=f"{rate:.0f}")
            bar.update(1)
        _check_finite(first_bad, epoch)
        test = evaluate(model, dataset, batch_size=max(256, recipe.batch_size), device=device,
                        precision=recipe.precision)
        elapsed = time.perf_counter() - epoch_start
        history.append({
            "epoch": epoch, "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen, "test_loss": test["loss"],
            "test_accuracy": test["accuracy"], "seconds": elapsed,
            "lr": opt.param_groups[0]["lr"],
        })
        if progress:
            row = history[-1]
            bar.write(f"epoch {epoch}/{recipe.epochs}  loss {row['train_loss']:.4f}  "
                      f"train {row['train_accuracy']:.4f}  test {row['test_accuracy']:.4f}  "
                      f"{seen / elapsed:.0f} img/s", file=sys.stderr)
    bar.close()
    seconds = time.perf_counter() - start
    last = history[-1]
    return TrainResult(
        test_accuracy=last["test_accuracy"], test_loss=last["test_loss"],
        train_accuracy=last["train_accuracy"], train_loss=last["train_loss"],
        epochs=recipe.epochs, seconds=seconds,
        images_per_second=recipe.epochs * loader.num_examples / seconds, history=history,
    )


def train_and_save(model: str, dataset: Dataset, recipe: Recipe, path: str | Path, *,
                   progress: bool = True, **options) -> tuple[Checkpoint, TrainResult]:
    """Build `model` (zoo name and options such as width), seeded by the recipe; train it on
    `dataset`; save it with its provenance (dataset, recipe, seed, accuracy, time)."""
    torch.manual_seed(recipe.seed)
    net = create_model(model, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                       **options)
    result = train(net, dataset, recipe, progress=progress)
    checkpoint = save_checkpoint(path, net, dataset=dataset.name, data=data_record(dataset),
                                 recipe=recipe.to_dict(),
                                 seed=recipe.seed, test_accuracy=result.test_accuracy,
                                 train_seconds=result.seconds)
    return checkpoint, result


def data_record(dataset: Dataset) -> dict:
    """What a network was trained on, as its checkpoint records it: the dataset's name, the
    fingerprint of its content (a subset, another seed's subset or other images differ) and
    its sizes. Part of a cached network's identity in a sweep."""
    return {"name": dataset.name, "fingerprint": dataset.fingerprint(),
            "train_examples": len(dataset.train), "test_examples": len(dataset.test)}


def import_and_save(model: str, dataset: Dataset, path: str | Path,
                    weights: str | Path | None = None, device: str = "auto",
                    prefix: str | None = None, key: str | None = None,
                    normalisation: str | None = None, mean: list[float] | None = None,
                    std: list[float] | None = None, input_size: tuple[int, int] | None = None,
                    **options) -> tuple[Checkpoint, float]:
    """A checkpoint of `model` (any model name: zoo, python:, timm:, torchvision:) with the
    user's `weights` for it (plato.models.weights: the formats, `prefix` and `key`; None: its
    initialisation), measured on the dataset's test split: (the checkpoint, its accuracy).
    The normalisation it was trained with (`mean`/`std`, a named `normalisation`, a timm
    model's own by default) and the input size it takes (`input_size` (h, w), built for it;
    the dataset's images are resized to it) are recorded and fed to it (plato.models.inputs)."""
    from plato.models.inputs import chosen_normalisation, feed_own_input

    channels, *data_size = dataset.input_shape
    size = tuple(input_size) if input_size and tuple(input_size) != tuple(data_size) else None
    net = create_model(model, num_classes=dataset.num_classes,
                       input_shape=(channels, *(size or data_size)), **options)
    if weights is not None:
        from plato.models.weights import load_weights

        load_weights(net, weights, prefix=prefix, key=key)
    own = chosen_normalisation(net, channels, normalisation, mean, std)
    if own is not None or size is not None:
        feed_own_input(net, dataset.mean, dataset.std, *(own or (None, None)), size=size)
    check_input_fits(net, dataset.input_shape, dataset.name)
    dev = resolve_device(device)
    accuracy = evaluate(net.to(dev), dataset, device=dev)["accuracy"]
    checkpoint = save_checkpoint(path, net.cpu(), dataset=dataset.name, test_accuracy=accuracy,
                                 imported_from=str(weights) if weights else None)
    return checkpoint, accuracy


def _check_finite(first_bad: torch.Tensor, epoch: int, what: str = "training") -> None:
    bad = int(first_bad.item())
    if bad >= 0:
        raise TrainingError(
            f"the {what} loss became non-finite at step {bad} (epoch {epoch}); "
            "lower the learning rate or use fp32. Nothing was saved."
        )


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset | Split, batch_size: int = 512,
             device: str | torch.device | None = None, precision: str = "fp32",
             mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` on a dataset's test split (or a Split).

    The model is evaluated in eval mode and returned to the mode it was in.
    """
    if isinstance(data, Dataset):
        split, mean, std = data.test, data.mean, data.std
    else:
        split = data
        if mean is None or std is None:
            raise PlatoError("evaluating a Split needs the dataset's mean and std")
    if device is None:
        device = next(model.parameters()).device
    device = resolve_device(device)
    loader = DeviceLoader(split, batch_size, mean=mean, std=std, device=device,
                          augment=Augment())
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for x, y in loader:
        with autocast(device, precision):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = loader.num_examples
    return {"accuracy": correct.item() / n, "loss": loss_sum.item() / n, "n": n}
