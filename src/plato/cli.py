"""The `plato` command. Every command takes --json and then prints one JSON object on stdout.

User errors (PlatoError) print one line on stderr and exit 1, without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from plato.errors import PlatoError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Plato: compare neural networks by model stitching.",
)

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of text.")
DATASET_HELP = "digits, mnist, cifar10, cifar100 or imagefolder:PATH"


def _emit(obj: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(obj))
    else:
        print(text)


def _model_options(width: int | None, residual: bool | None, stem: str | None) -> dict:
    return {k: v for k, v in (("width", width), ("residual", residual), ("stem", stem))
            if v is not None}


@app.command()
def models(
    pattern: str = typer.Argument("*", help="Shell wildcard, e.g. 'resnet-*'."),
    granularity: str = typer.Option("block", help="block or layer"),
    input_shape: str = typer.Option(None, help="C,H,W (default: the model's, 3,32,32)"),
    as_json: bool = JSON_OPT,
) -> None:
    """List models with their cut points and activation shapes."""
    from plato.models import create_model, cut_points, list_models
    from plato.models.registry import model_syntax

    shape = _parse_shape(input_shape) if input_shape else None
    names = list_models(pattern)
    if not names and "*" not in pattern and "?" not in pattern:
        names = [pattern]  # a family name such as resnet-3463 that is not listed
    if not names:
        raise PlatoError(f"no model matches '{pattern}': try `plato models` for all")
    rows, lines = [], []
    for name in names:
        model = create_model(name, input_shape=shape)
        points = cut_points(model, granularity=granularity)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"name": name, "parameters": params, "input_shape": list(model.input_shape),
                     "cut_points": [p.to_dict() for p in points]})
        lines.append(f"{name}  ({params / 1e6:.2f}M parameters, input "
                     f"{'x'.join(map(str, model.input_shape))})")
        lines += [f"  {p.index:>3}  {p.name:<24} {'x'.join(map(str, p.shape))}" for p in points]
    lines.append("families: " + "; ".join(model_syntax()))
    _emit({"models": rows}, as_json, "\n".join(lines))


@app.command()
def data(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    download: bool = typer.Option(False, help="Fetch canonical files if missing."),
    as_json: bool = JSON_OPT,
) -> None:
    """Load a dataset (decoding and caching an image folder) and describe it."""
    from plato.data import load_dataset

    ds = load_dataset(dataset, root=root, download=download)
    info = {"dataset": ds.name, "train": len(ds.train), "test": len(ds.test),
            "input_shape": list(ds.input_shape), "classes": ds.classes,
            "mean": list(ds.mean), "std": list(ds.std)}
    _emit(info, as_json, "\n".join(f"{k}: {v}" for k, v in info.items()))


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise PlatoError(f"input shape must be C,H,W (e.g. 3,32,32), got '{text}'")
    return shape


def _default_out(model: str, dataset_short: str, seed: int) -> Path:
    return Path("runs") / f"{model}-{dataset_short}-seed{seed}.ckpt"


@app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Model name, e.g. resnet-1111 (see `plato models`)."),
    dataset: str = typer.Option("digits", help=DATASET_HELP),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    download: bool = typer.Option(False, help="Fetch canonical files if missing."),
    epochs: int = typer.Option(10, help="Training epochs."),
    batch_size: int = typer.Option(128, help="Batch size."),
    optimizer: str = typer.Option("sgd", help="sgd (Nesterov) or adam"),
    lr: float = typer.Option(None, help="Peak lr (default 0.1*batch/256 sgd, 1e-3 adam)."),
    schedule: str = typer.Option("cosine", help="cosine (with warmup), onecycle or constant"),
    weight_decay: float = typer.Option(5e-4, help="Weight decay on conv/linear weights."),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing."),
    precision: str = typer.Option("fp32", help="fp32 or bf16"),
    augment: str = typer.Option("auto", help="auto, none, crop, flip, crop-flip, translate-flip"),
    seed: int = typer.Option(0, help="Seed of the initialisation, order and augmentation."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    width: int = typer.Option(None, help="Base channels (default: the model's)."),
    residual: bool = typer.Option(None, "--residual/--no-residual", help="Skip connections."),
    stem: str = typer.Option(None, help="ResNet stem: cifar or imagenet"),
    train_subset: int = typer.Option(None, help="Train on a random subset of this many images."),
    out: Path = typer.Option(None, help="Checkpoint file (default runs/MODEL-DATASET-seedS.ckpt)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a model on a dataset and save a checkpoint."""
    import torch

    from plato.checkpoint import save_checkpoint
    from plato.data import load_dataset
    from plato.models import create_model
    from plato.train import Recipe, train

    recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                    schedule=schedule, weight_decay=weight_decay,
                    label_smoothing=label_smoothing, precision=precision, augment=augment,
                    seed=seed, device=device)
    ds = load_dataset(dataset, root=root, download=download)
    if train_subset:
        ds = ds.subset(train=train_subset, seed=seed)
    torch.manual_seed(seed)
    net = create_model(model, num_classes=ds.num_classes, input_shape=ds.input_shape,
                       **_model_options(width, residual, stem))
    result = train(net, ds, recipe, progress=not quiet)
    out = out or _default_out(model, ds.short_name, seed)
    save_checkpoint(out, net, dataset=ds.name, recipe=recipe.to_dict(), seed=seed,
                    test_accuracy=result.test_accuracy, train_seconds=result.seconds)
    obj = {"checkpoint": str(out), "model": model, "dataset": ds.name, **result.to_dict()}
    _emit(obj, as_json, f"{model} on {ds.name}: test accuracy {result.test_accuracy:.4f} "
          f"after {epochs} epochs in {result.seconds:.1f} s "
          f"({result.images_per_second:.0f} img/s)\ncheckpoint: {out}")


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `plato train`."),
    dataset: str = typer.Option(None, help="Default: the dataset it was trained on."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    as_json: bool = JSON_OPT,
) -> None:
    """Evaluate a checkpoint on a dataset's test split."""
    from plato.checkpoint import load_checkpoint
    from plato.data import load_dataset
    from plato.train import evaluate, resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)
    name = dataset or ckpt.meta.get("dataset")
    if not name:
        raise PlatoError(f"{checkpoint} records no dataset: pass --dataset")
    ds = load_dataset(name, root=root)
    expected = tuple(ckpt.meta["config"]["input_shape"])
    if ds.input_shape != expected or ds.num_classes != ckpt.meta["config"]["num_classes"]:
        raise PlatoError(
            f"{checkpoint} expects {ckpt.meta['config']['num_classes']} classes of shape "
            f"{expected}; {ds.name} has {ds.num_classes} of shape {ds.input_shape}"
        )
    res = evaluate(ckpt.model, ds, device=dev)
    obj = {"checkpoint": str(checkpoint), "model": ckpt.name, "dataset": ds.name,
           "test_accuracy": res["accuracy"], "test_loss": res["loss"], "n": res["n"]}
    _emit(obj, as_json, f"{ckpt.name} on {ds.name}: test accuracy {res['accuracy']:.4f} "
          f"(loss {res['loss']:.4f}, n={res['n']})")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's outputs."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train two small networks of different architectures on `digits` (offline, ~20 s)."""
    import torch

    from plato.checkpoint import save_checkpoint
    from plato.data import load_dataset
    from plato.models import create_model
    from plato.train import Recipe, train

    ds = load_dataset("digits")
    nets = {"resnet-1111": {"width": 16}, "cnn-3": {"width": 16}}
    rows = []
    for i, (name, options) in enumerate(nets.items()):
        recipe = Recipe(epochs=15, batch_size=64, seed=i, device="cpu")
        torch.manual_seed(recipe.seed)
        net = create_model(name, num_classes=ds.num_classes, input_shape=ds.input_shape,
                           **options)
        result = train(net, ds, recipe, progress=not quiet)
        path = out / f"{name}-digits-seed{recipe.seed}.ckpt"
        save_checkpoint(path, net, dataset=ds.name, recipe=recipe.to_dict(), seed=recipe.seed,
                        test_accuracy=result.test_accuracy, train_seconds=result.seconds)
        rows.append({"model": name, "checkpoint": str(path),
                     "test_accuracy": result.test_accuracy, "seconds": result.seconds})
    text = "\n".join(f"{r['model']:<12} test accuracy {r['test_accuracy']:.4f}  "
                     f"({r['seconds']:.1f} s)  {r['checkpoint']}" for r in rows)
    _emit({"dataset": "digits", "networks": rows}, as_json, text)


def _stitch_config(objective, epochs, batch_size, lr, seed, device, match_loss, ridge):
    from plato.stitch import StitchConfig

    return StitchConfig(objective=objective, epochs=epochs, batch_size=batch_size, lr=lr,
                        seed=seed, device=device, match_loss=match_loss, ridge=ridge)


def _stitch_dataset(name: str | None, root: Path | None, *checkpoints):
    from plato.data import load_dataset

    name = name or checkpoints[0].meta.get("dataset")
    if not name:
        raise PlatoError("the checkpoint records no dataset: pass --dataset")
    ds = load_dataset(name, root=root)
    for ckpt in checkpoints:
        cfg = ckpt.meta["config"]
        if tuple(cfg["input_shape"]) != ds.input_shape or cfg["num_classes"] != ds.num_classes:
            raise PlatoError(
                f"{ckpt.path} expects {cfg['num_classes']} classes of shape "
                f"{tuple(cfg['input_shape'])}; {ds.name} has {ds.num_classes} of shape "
                f"{ds.input_shape}"
            )
    return ds


def _result_line(r) -> str:
    return (f"{r.sender}:{r.sender_point} -> {r.receiver}:{r.receiver_point}  "
            f"[{r.stitch}, {r.objective}, {r.stitch_parameters} parameters]\n"
            f"  stitched accuracy {r.stitched_accuracy:.4f}  (sender {r.sender_accuracy:.4f}, "
            f"receiver {r.receiver_accuracy:.4f}, normalised {r.normalized_accuracy:.4f})\n"
            f"  activation MSE {r.activation_mse:.4g}  CKA {r.activation_cka:.4f}  "
            f"stitch loss {r.stitch_loss:.4g}  {r.epochs} epochs  {r.seconds:.1f} s")


OBJECTIVE_HELP = "task, match, lstsq or lstsq+task"


@app.command()
def stitch(
    sender: Path = typer.Argument(..., help="Sender checkpoint (frozen up to --from)."),
    receiver: Path = typer.Argument(..., help="Receiver checkpoint (frozen from --to on)."),
    from_point: str = typer.Option(..., "--from", help="Sender cut point: name or index."),
    to_point: str = typer.Option(..., "--to", help="Receiver cut point: name or index."),
    objective: str = typer.Option("task", help=OBJECTIVE_HELP),
    stitch_type: str = typer.Option("bn-conv1x1-bn", "--stitch",
                                    help="bn-conv1x1-bn, conv1x1, convKxK, lowrank-R, mlp, plato"),
    resize: str = typer.Option("area", help="Spatial resize: area, bilinear or nearest."),
    epochs: int = typer.Option(3, help="SGD epochs (lstsq: none)."),
    batch_size: int = typer.Option(128, help="Batch size."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    match_loss: str = typer.Option("mse", help="mse or l1, for the match objective."),
    ridge: float = typer.Option(1e-4, help="Relative ridge of lstsq."),
    granularity: str = typer.Option("block", help="block or layer: how indices are counted."),
    dataset: str = typer.Option(None, help="Default: the sender's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    seed: int = typer.Option(0, help="Seed of the stitch's initialisation and data order."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stitch SENDER at --from into RECEIVER at --to, train the stitch, and measure it."""
    from plato.checkpoint import load_checkpoint
    from plato.stitch import stitch_networks

    config = _stitch_config(objective, epochs, batch_size, lr, seed, device, match_loss, ridge)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = _stitch_dataset(dataset, root, s_ckpt, r_ckpt)
    result, _ = stitch_networks(s_ckpt, r_ckpt, from_point, to_point, ds, stitch=stitch_type,
                                config=config, granularity=granularity, resize=resize,
                                progress=not quiet)
    _emit(result.to_dict(), as_json, _result_line(result))


@app.command()
def replace(
    checkpoint: Path = typer.Argument(..., help="A trained network."),
    from_point: str = typer.Option(..., "--from", help="First cut point of the span."),
    to_point: str = typer.Option(..., "--to", help="Last cut point of the span."),
    objective: list[str] = typer.Option(
        None, help="match (autoencoder) and/or task (vanilla); default both, side by side."),
    stitch_type: str = typer.Option("bn-conv1x1-bn", "--stitch", help="Stitch type."),
    epochs: int = typer.Option(3, help="SGD epochs."),
    batch_size: int = typer.Option(128, help="Batch size."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    granularity: str = typer.Option("block", help="block or layer: how indices are counted."),
    dataset: str = typer.Option(None, help="Default: the network's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Replace the span --from..--to of one network by a stitch (autoencoder vs vanilla)."""
    from plato.checkpoint import load_checkpoint
    from plato.stitch import replace_span

    objectives = tuple(objective or ("match", "task"))
    config = _stitch_config(objectives[0], epochs, batch_size, lr, seed, device, "mse", 1e-4)
    ckpt = load_checkpoint(checkpoint)
    ds = _stitch_dataset(dataset, root, ckpt)
    results = replace_span(ckpt, from_point, to_point, ds, objectives=objectives,
                           stitch=stitch_type, config=config, granularity=granularity,
                           progress=not quiet)
    first = results[0]
    rows = [{"objective": r.objective, "accuracy": r.stitched_accuracy,
             "activation_mse": r.activation_mse, "activation_cka": r.activation_cka,
             "stitch_loss": r.stitch_loss, "result": r.to_dict()} for r in results]
    text = [f"{ckpt.name}: span {first.sender_point} -> {first.receiver_point} replaced by "
            f"{stitch_type} ({first.stitch_parameters} parameters); original accuracy "
            f"{first.receiver_accuracy:.4f}",
            f"  {'objective':<10} {'accuracy':>9} {'MSE at to':>11} {'CKA':>7}"]
    text += [f"  {r['objective']:<10} {r['accuracy']:>9.4f} {r['activation_mse']:>11.4g} "
             f"{r['activation_cka']:>7.4f}" for r in rows]
    obj = {"checkpoint": str(checkpoint), "from": first.sender_point, "to": first.receiver_point,
           "original_accuracy": first.receiver_accuracy, "replacements": rows}
    _emit(obj, as_json, "\n".join(text))


def main() -> None:
    try:
        app()
    except PlatoError as e:
        print(f"plato: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("plato: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
