"""Networks: list models, load data, train, import and evaluate checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import (
    DATASET_HELP,
    RECIPE,
    Dataset,
    Device,
    Json,
    ModelOptions,
    Quiet,
    Root,
    TrainedDataset,
    parse_shape,
    settings,
)
from plato.cli.output import emit
from plato.errors import PlatoError


@app.command()
def models(
    pattern: Annotated[str, typer.Argument(help="Shell wildcard, e.g. 'resnet-*'.")] = "*",
    granularity: Annotated[str, typer.Option(help="block or layer")] = "block",
    input_shape: Annotated[str | None, typer.Option(
        help="C,H,W (default: the model's, 3,32,32)")] = None,
    as_json: Json = False,
) -> None:
    """List models with their cut points and activation shapes."""
    from plato.models.listing import list_model_points
    from plato.models.registry import model_syntax
    from plato.models.tokens import describe

    listed = list_model_points(pattern, parse_shape(input_shape) if input_shape else None,
                               granularity)
    lines = []
    for m in listed:
        lines.append(f"{m.name}  ({m.parameters / 1e6:.2f}M parameters, input "
                     f"{'x'.join(map(str, m.input_shape))}; options: "
                     f"{', '.join(m.options) or 'none'}; cut points by {m.cut_points_by})")
        lines += [f"  {p.index:>3}  {p.name:<24} {'x'.join(map(str, p.shape))}"
                  + (f"  (tokens: {describe(p.shape, p.tokens)})" if p.tokens else "")
                  for p in m.cut_points]
    lines.append("families: " + "; ".join(model_syntax()))
    emit({"models": [m.to_dict() for m in listed]}, as_json, "\n".join(lines))


@app.command()
def data(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP)],
    root: Root = None,
    download: Annotated[bool, typer.Option(help="Fetch canonical files if missing.")] = False,
    as_json: Json = False,
) -> None:
    """Load a dataset (decoding and caching an image folder) and describe it."""
    from plato.data import load_dataset

    ds = load_dataset(dataset, root=root, download=download)
    info = {"dataset": ds.name, "train": len(ds.train), "test": len(ds.test),
            "input_shape": list(ds.input_shape), "classes": ds.classes,
            "mean": list(ds.mean), "std": list(ds.std)}
    emit(info, as_json, "\n".join(f"{k}: {v}" for k, v in info.items()))


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Argument(
        help="Model name, e.g. resnet-1111 (see `plato models`).")],
    dataset: Dataset = "digits",
    root: Root = None,
    download: Annotated[bool, typer.Option(help="Fetch canonical files if missing.")] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = RECIPE.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = RECIPE.batch_size,
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov) or adam")] = RECIPE.optimizer,
    lr: Annotated[float | None, typer.Option(
        help="Peak lr (default 0.1*batch/256 sgd, 1e-3 adam).")] = RECIPE.lr,
    schedule: Annotated[str, typer.Option(
        help="cosine (with warmup), onecycle or constant")] = RECIPE.schedule,
    weight_decay: Annotated[float, typer.Option(
        help="Weight decay on conv/linear weights.")] = RECIPE.weight_decay,
    label_smoothing: Annotated[float, typer.Option(
        help="Label smoothing.")] = RECIPE.label_smoothing,
    precision: Annotated[str, typer.Option(help="fp32 or bf16")] = RECIPE.precision,
    augment: Annotated[str, typer.Option(
        help="auto, none, crop, flip, crop-flip, translate-flip")] = RECIPE.augment,
    seed: Annotated[int, typer.Option(
        help="Seed of the initialisation, order and augmentation.")] = RECIPE.seed,
    device: Device = RECIPE.device,
    width: Annotated[int | None, typer.Option(
        help="Base channels (default: the model's).")] = None,
    residual: Annotated[bool | None, typer.Option(
        "--residual/--no-residual", help="Skip connections.")] = None,
    stem: Annotated[str | None, typer.Option(help="ResNet stem: cifar or imagenet")] = None,
    option: ModelOptions = None,
    train_subset: Annotated[int | None, typer.Option(
        help="Train on a random subset of this many images.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Checkpoint file (default runs/MODEL-DATASET-seedS.ckpt).")] = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Train a model on a dataset and save a checkpoint."""
    from plato.data import load_dataset
    from plato.files import check_writable
    from plato.train import Recipe, train_and_save

    recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                    schedule=schedule, weight_decay=weight_decay,
                    label_smoothing=label_smoothing, precision=precision, augment=augment,
                    seed=seed, device=device)
    ds = load_dataset(dataset, root=root, download=download)
    if train_subset:
        ds = ds.subset(train=train_subset, seed=seed)
    out = out or Path("runs") / f"{model}-{ds.short_name}-seed{seed}.ckpt"
    check_writable(out.parent)  # before training, not after
    options = settings(option, "--option", "batchnorm=false", what="model option",
                       given={"width": width, "residual": residual, "stem": stem})
    _, result = train_and_save(model, ds, recipe, out, progress=not quiet, **options)
    obj = {"checkpoint": str(out), "model": model, "dataset": ds.name, **result.to_dict()}
    emit(obj, as_json, f"{model} on {ds.name}: test accuracy {result.test_accuracy:.4f} "
         f"after {epochs} epochs in {result.seconds:.1f} s "
         f"({result.images_per_second:.0f} img/s)\ncheckpoint: {out}")


@app.command("import")
def import_cmd(
    model: Annotated[str, typer.Argument(
        help="A model name: zoo, python:package.module:factory, timm:NAME or "
        "torchvision:NAME.")],
    weights: Annotated[Path | None, typer.Option(
        help="The trained weights: safetensors (timm, Hugging Face), a PyTorch state dict "
        "(.pth, .pt, pytorch_model.bin; read with torch.load(weights_only=True), onto the "
        "CPU), or a Lightning .ckpt; default none (random init).")] = None,
    prefix: Annotated[str | None, typer.Option(
        help="The name the model's tensors have in the file before their own, e.g. "
        "'model.' (Lightning) or 'module.' (DataParallel); only those are read.")] = None,
    normalisation: Annotated[str | None, typer.Option(
        help="The normalisation it was trained with: imagenet, inception, or dataset (the "
        "dataset's own); default: a timm model's own, else the dataset's.")] = None,
    mean: Annotated[str | None, typer.Option(
        help="Its own per-channel input mean, e.g. 0.4914,0.4822,0.4465 (with --std).")] = None,
    std: Annotated[str | None, typer.Option(
        help="Its own per-channel input std, e.g. 0.2470,0.2435,0.2616 (with --mean).")] = None,
    input_size: Annotated[str | None, typer.Option(
        help="The image size it takes, HEIGHT,WIDTH or one number for a square (e.g. 224): "
        "built for it, and fed the dataset's images resized to it (scaled to cover it, "
        "bilinearly, then centre-cropped); default the dataset's.")] = None,
    key: Annotated[str | None, typer.Option(
        help="Where the state dict is in the file's dict, e.g. 'ema' or 'ema.module' "
        "(default: the file itself, or state_dict / model / model_state_dict).")] = None,
    dataset: Annotated[str, typer.Option(
        help=DATASET_HELP + " (the data it classifies)")] = "digits",
    root: Root = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="Any option of the model as KEY=VALUE, repeatable.")] = None,
    out: Annotated[Path, typer.Option(help="The Plato checkpoint to write.")] = ...,
    device: Annotated[str, typer.Option(
        help="auto, cpu, cuda, cuda:N (the evaluation)")] = "auto",
    as_json: Json = False,
) -> None:
    """Make a Plato checkpoint of a model and your weights for it: measured on the dataset's
    test split, usable wherever a checkpoint is (stitch, sweep, invert, ...)."""
    from plato.data import load_dataset
    from plato.files import check_writable
    from plato.train import import_and_save

    options = settings(option, "--option", "width=16", what="model option")
    ds = load_dataset(dataset, root=root)
    check_writable(out.parent)
    ckpt, accuracy = import_and_save(
        model, ds, out, weights, device, prefix=prefix, key=key, normalisation=normalisation,
        mean=_values(mean, "--mean"), std=_values(std, "--std"),
        input_size=_size(input_size), **options)
    emit({"checkpoint": str(out), "model": model, "dataset": ds.name,
          "test_accuracy": accuracy, "weights": str(weights) if weights else None,
          "normalisation": ckpt.meta.get("input")}, as_json,
         f"{model} on {ds.name}: test accuracy {accuracy:.4f}"
         f"{'' if weights else ' (random init: no --weights)'}\n"
         f"normalisation: {ckpt.normalisation}\ncheckpoint: {out}")


def _values(text: str | None, flag: str) -> list[float] | None:
    """Comma-separated numbers, or one line saying what was wrong."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise PlatoError(f"{flag} takes numbers separated by commas, one per channel (e.g. "
                         f"0.485,0.456,0.406), not '{text}'") from None


def _size(text: str | None) -> tuple[int, int] | None:
    """HEIGHT,WIDTH or one number (a square), or one line saying what was wrong."""
    if text is None:
        return None
    try:
        sides = [int(v) for v in text.split(",")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1 or max(sides) > MAX_SIDE:
        raise PlatoError(f"--input-size takes HEIGHT,WIDTH or one number for a square, each "
                         f"1 to {MAX_SIDE} pixels (e.g. 224), not '{text}'")
    return (sides[0], sides[-1])


MAX_SIDE = 4096  # pixels: a side beyond it is a typo, not a network's input


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by `plato train`.")],
    dataset: TrainedDataset = None,
    root: Root = None,
    device: Device = "auto",
    as_json: Json = False,
) -> None:
    """Evaluate a checkpoint on a dataset's test split."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.device import resolve_device
    from plato.train import evaluate

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)
    ds = dataset_for([ckpt], dataset, root)
    res = evaluate(ckpt.model, ds, device=dev)
    obj = {"checkpoint": str(checkpoint), "model": ckpt.name, "dataset": ds.name,
           "test_accuracy": res["accuracy"], "test_loss": res["loss"], "n": res["n"],
           "normalisation": ckpt.meta.get("input"), "trained_on": ckpt.meta.get("data")}
    emit(obj, as_json, f"{ckpt.name} on {ds.name}: test accuracy {res['accuracy']:.4f} "
         f"(loss {res['loss']:.4f}, n={res['n']}; normalisation: {ckpt.normalisation}; "
         f"trained on {ckpt.trained_on})")

