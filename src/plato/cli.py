"""The `plato` command. Every command takes --json and then prints one JSON object on stdout.

User errors (PlatoError) and faults of the machine (a full disk, a read-only place: OSError,
SQLite's errors) print one line on stderr and exit 1, without a traceback (PLATO_TRACEBACK=1
shows it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import typer
from safetensors import SafetensorError

from plato.errors import PlatoError, fault_message
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.similarity import SimilarityConfig
from plato.stitch import StitchConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Plato: compare neural networks by model stitching.",
)

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of text.")
ALL_SPECS_OPT = typer.Option(False, "--all-specs", help="Pool the cells of every spec in the "
                             "store (default: one spec; they are different experiments).")
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
    from plato.models import CutGraph, create_model, list_models, model_options
    from plato.models.registry import model_syntax
    from plato.models.tokens import describe

    shape = _parse_shape(input_shape) if input_shape else None
    names = list_models(pattern)
    if not names and "*" not in pattern and "?" not in pattern:
        names = [pattern]  # a family name such as resnet-3463 that is not listed
    if not names:
        raise PlatoError(f"no model matches '{pattern}': try `plato models` for all")
    rows, lines = [], []
    for name in names:
        model = create_model(name, input_shape=shape)
        graph = CutGraph(model)
        points = graph.points(granularity)
        params = sum(p.numel() for p in model.parameters())
        options = model_options(name)
        rows.append({"name": name, "parameters": params, "input_shape": list(model.input_shape),
                     "options": options, "cut_points_by": graph.mechanism,
                     "cut_points": [p.to_dict() for p in points]})
        lines.append(f"{name}  ({params / 1e6:.2f}M parameters, input "
                     f"{'x'.join(map(str, model.input_shape))}; options: "
                     f"{', '.join(options) or 'none'}; cut points by {graph.mechanism})")
        lines += [f"  {p.index:>3}  {p.name:<24} {'x'.join(map(str, p.shape))}"
                  + (f"  (tokens: {describe(p.shape, p.tokens)})" if p.tokens else "")
                  for p in points]
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
    option: list[str] = typer.Option(None, "--option", help="Any option of the model as "
                                     "KEY=VALUE, repeatable (e.g. vgg11: batchnorm=false, "
                                     "hidden=256, dropout=0)."),
    train_subset: int = typer.Option(None, help="Train on a random subset of this many images."),
    out: Path = typer.Option(None, help="Checkpoint file (default runs/MODEL-DATASET-seedS.ckpt)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a model on a dataset and save a checkpoint."""
    from plato.data import load_dataset
    from plato.train import Recipe, train_and_save

    recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                    schedule=schedule, weight_decay=weight_decay,
                    label_smoothing=label_smoothing, precision=precision, augment=augment,
                    seed=seed, device=device)
    ds = load_dataset(dataset, root=root, download=download)
    if train_subset:
        ds = ds.subset(train=train_subset, seed=seed)
    out = out or _default_out(model, ds.short_name, seed)
    _check_writable(out.parent)  # before training, not after
    options = _model_options(width, residual, stem)
    for name, value in (_setting(o, "--option", "batchnorm=false") for o in option or []):
        if name in options:
            raise PlatoError(f"the model option '{name}' is given twice")
        options[name] = value
    _, result = train_and_save(model, ds, recipe, out, progress=not quiet, **options)
    obj = {"checkpoint": str(out), "model": model, "dataset": ds.name, **result.to_dict()}
    _emit(obj, as_json, f"{model} on {ds.name}: test accuracy {result.test_accuracy:.4f} "
          f"after {epochs} epochs in {result.seconds:.1f} s "
          f"({result.images_per_second:.0f} img/s)\ncheckpoint: {out}")


@app.command("import")
def import_cmd(
    model: str = typer.Argument(..., help="A model name: zoo, python:package.module:factory, "
                                "timm:NAME or torchvision:NAME."),
    weights: Path = typer.Option(None, help="The trained weights: safetensors, or a PyTorch "
                                 "state dict (read with torch.load(weights_only=True)); "
                                 "default none (random init)."),
    dataset: str = typer.Option("digits", help=DATASET_HELP + " (the data it classifies)"),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    option: list[str] = typer.Option(None, "--option", help="Any option of the model as "
                                     "KEY=VALUE, repeatable."),
    out: Path = typer.Option(..., help="The Plato checkpoint to write."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N (the evaluation)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Make a Plato checkpoint of a model and your weights for it: measured on the dataset's
    test split, usable wherever a checkpoint is (stitch, sweep, invert, ...)."""
    from plato.checkpoint import save_checkpoint
    from plato.data import load_dataset
    from plato.device import resolve_device
    from plato.models import create_model
    from plato.models.external import load_weights
    from plato.train import evaluate

    options = dict(_setting(o, "--option", "width=16") for o in option or [])
    ds = load_dataset(dataset, root=root)
    net = create_model(model, num_classes=ds.num_classes, input_shape=ds.input_shape,
                       **options)
    if weights is not None:
        load_weights(net, weights)
    dev = resolve_device(device)
    accuracy = evaluate(net.to(dev), ds, device=dev)["accuracy"]
    _check_writable(out.parent)
    save_checkpoint(out, net.cpu(), dataset=ds.name, test_accuracy=accuracy,
                    imported_from=str(weights) if weights else None)
    _emit({"checkpoint": str(out), "model": model, "dataset": ds.name,
           "test_accuracy": accuracy, "weights": str(weights) if weights else None}, as_json,
          f"{model} on {ds.name}: test accuracy {accuracy:.4f}"
          f"{'' if weights else ' (random init: no --weights)'}\ncheckpoint: {out}")


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
    from plato.device import resolve_device
    from plato.train import evaluate

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)
    ds = _checkpoint_dataset(dataset, root, ckpt)
    res = evaluate(ckpt.model, ds, device=dev)
    obj = {"checkpoint": str(checkpoint), "model": ckpt.name, "dataset": ds.name,
           "test_accuracy": res["accuracy"], "test_loss": res["loss"], "n": res["n"]}
    _emit(obj, as_json, f"{ckpt.name} on {ds.name}: test accuracy {res['accuracy']:.4f} "
          f"(loss {res['loss']:.4f}, n={res['n']})")


def _checkpoint_dataset(name: str | None, root: Path | None, *checkpoints):
    """The dataset named, else the first checkpoint's; every checkpoint must take it."""
    from plato.data import load_dataset

    name = name or checkpoints[0].meta.get("dataset")
    if not name:
        raise PlatoError(f"{checkpoints[0].path} records no dataset: pass --dataset")
    ds = load_dataset(name, root=root)
    for ckpt in checkpoints:
        ckpt.check_dataset(ds)
    return ds


def _check_writable(folder: Path) -> None:
    """Create `folder` and a file in it, or raise the OSError that says why not (a full disk,
    a read-only place): work that would end in writing there fails before it starts."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".plato-write-test-"):
            pass
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None  # the folder, not the probe


def _setting(text: str, flag: str = "--set",
             example: str = "optimizer=sgd") -> tuple[str, int | float | bool | str]:
    """FIELD=VALUE from the command line, the value typed as it reads: 4096, 0.1, 1e-3,
    true, sgd."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise PlatoError(f"{flag} takes {'FIELD' if flag == '--set' else 'NAME'}=VALUE "
                         f"(e.g. {example}), got '{text}'")
    for kind in (int, float):
        try:
            return name.strip(), kind(value)
        except ValueError:
            pass
    return name.strip(), {"true": True, "false": False}.get(value.lower(), value)


def _stitch_config(fast: bool, settings: list[str] | None, **options) -> StitchConfig:
    """The options given (not None) and the --set FIELD=VALUE settings, over the default they
    mean (StitchConfig.from_user: converging; a fixed budget with --epochs; or --fast)."""
    given = {k: v for k, v in options.items() if v is not None}
    for name, value in map(_setting, settings or []):
        if name in given:
            raise PlatoError(f"the stitch setting '{name}' is given twice")
        given[name] = value
    return StitchConfig.from_user(given, fast)


EPOCHS_HELP = ("A fixed budget of this many SGD epochs (the fields of StitchConfig(): Adam 1e-3, "
               "batch 128) instead of the default, which trains until a held-out slice of "
               "the training split stops improving.")
LR_HELP = "Learning rate (default 0.03, SGD, tenfold lower after the first plateau)."
FAST_HELP = ("Start from the fast grid setting (StitchConfig.fast(): the default's rule, "
             "looser and capped at 1,000 steps, from a closed form on 4,096 examples).")
SET_HELP = ("Any stitch setting as FIELD=VALUE, repeatable: " + ", ".join(
    f"{name}={str(default).lower() if isinstance(default, bool) else default}"
    for name, default in StitchConfig.converging().to_dict().items()) + ".")


def _result_line(r) -> str:
    return (f"{r.sender}:{r.sender_point} -> {r.receiver}:{r.receiver_point}  "
            f"[{r.stitch}, {r.objective}, {r.stitch_parameters} parameters]\n"
            f"  stitched accuracy {r.stitched_accuracy:.4f}  (sender {r.sender_accuracy:.4f}, "
            f"receiver {r.receiver_accuracy:.4f}, normalised {r.normalized_accuracy:.4f})\n"
            f"  activation MSE {r.activation_mse:.4g}  CKA {r.activation_cka:.4f}  "
            f"distance from the receiver's distribution {r.receiver_distance:.3g} "
            f"(its own test activations {r.receiver_own_distance:.3g})\n"
            f"  stitch loss {r.stitch_loss:.4g}  {r.epochs} epochs, {r.steps} steps"
            + ("" if r.converged is None else
               "  converged" if r.converged else "  NOT converged (max_steps)")
            + f"  {r.seconds:.1f} s")


OBJECTIVE_HELP = "task, match, lstsq or lstsq+task"


@app.command()
def stitch(
    sender: Path = typer.Argument(..., help="Sender checkpoint (frozen up to --from)."),
    receiver: Path = typer.Argument(..., help="Receiver checkpoint (frozen from --to on)."),
    from_point: str = typer.Option(..., "--from", help="Sender cut point: name or index."),
    to_point: str = typer.Option(..., "--to", help="Receiver cut point: name or index."),
    objective: str = typer.Option(None, help=f"{OBJECTIVE_HELP} (default lstsq+task)"),
    stitch_type: str = typer.Option("bn-conv1x1-bn", "--stitch",
                                    help="bn-conv1x1-bn, conv1x1, convKxK, lowrank-R, mlp, plato"),
    resize: str = typer.Option("area", help="Spatial resize: area, bilinear or nearest."),
    epochs: int = typer.Option(None, help=EPOCHS_HELP),
    batch_size: int = typer.Option(None, help="Batch size (default 64)."),
    lr: float = typer.Option(None, help=LR_HELP),
    match_loss: str = typer.Option(None, help="mse or l1, for the match objective."),
    ridge: float = typer.Option(None, help="Relative ridge of lstsq (default 1e-4)."),
    fast: bool = typer.Option(False, "--fast", help=FAST_HELP),
    setting: list[str] = typer.Option(None, "--set", help=SET_HELP),
    granularity: str = typer.Option("block", help="block or layer: how indices are counted."),
    dataset: str = typer.Option(None, help="Default: the sender's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    seed: int = typer.Option(None, help="Seed of the stitch's initialisation and data order."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N (default auto)"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stitch SENDER at --from into RECEIVER at --to, train the stitch, and measure it."""
    from plato.checkpoint import load_checkpoint
    from plato.stitch import stitch_networks

    config = _stitch_config(fast, setting, objective=objective, epochs=epochs,
                            batch_size=batch_size, lr=lr, match_loss=match_loss, ridge=ridge,
                            seed=seed, device=device)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = _checkpoint_dataset(dataset, root, s_ckpt, r_ckpt)
    result, _ = stitch_networks(s_ckpt, r_ckpt, from_point, to_point, ds, stitch=stitch_type,
                                config=config, granularity=granularity, resize=resize,
                                progress=not quiet)
    _emit({**result.to_dict(), "config": config.to_dict()}, as_json, _result_line(result))


@app.command()
def similarity(
    net_a: Path = typer.Argument(..., help="Checkpoint A (rows)."),
    net_b: Path = typer.Argument(..., help="Checkpoint B (columns)."),
    measure: list[str] = typer.Option(
        None, help="cka (minibatch, streaming), linear_cka, linear_cka_debiased, rbf_cka, "
        "procrustes, procrustes_similarity, cca, svcca, pwcca; repeat for several. "
        "Default: cka."),
    dataset: str = typer.Option(None, help="Default: A's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    split: str = typer.Option(SimilarityConfig.split, help="test or train."),
    examples: int = typer.Option(None, help="Examples to stream (default: the whole split)."),
    collect: int = typer.Option(SimilarityConfig.collect,
                                help="Examples held for the whole-matrix measures."),
    batch_size: int = typer.Option(SimilarityConfig.batch_size,
                                   help="Batch size (cka: the minibatch)."),
    layout: str = typer.Option(SimilarityConfig.layout,
                               help="flatten, positions or pool, for conv points."),
    permutations: int = typer.Option(SimilarityConfig.permutations,
                                     help="Permutation null: shuffles of B's examples against "
                                          "A's, for p-values and calibrated scores (0: none)."),
    null_examples: int = typer.Option(SimilarityConfig.null_examples,
                                      help="Examples the permutation null is computed on."),
    granularity: str = typer.Option("block", help="block or layer cut points."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Similarity of every cut point of A to every cut point of B (rows = A, columns = B)."""
    from plato.checkpoint import load_checkpoint
    from plato.similarity import similarity_grid

    config = SimilarityConfig(layout=layout, batch_size=batch_size, examples=examples,
                              collect=collect, split=split, permutations=permutations,
                              null_examples=null_examples)
    a, b = load_checkpoint(net_a), load_checkpoint(net_b)
    ds = _checkpoint_dataset(dataset, root, a, b)
    tables = similarity_grid(a.model, b.model, ds, tuple(measure or ("cka",)), config,
                             granularity=granularity, device=device, progress=not quiet)
    text = []
    for name, t in tables.items():
        frame = t.frame()
        frame.index.name, frame.columns.name = f"{a.name} (A)", f"{b.name} (B)"
        text += [f"{name} on {t.examples} {ds.name} {split} examples (layout {layout}):",
                 _format_table(frame), ""]
        if t.permutations:
            p = t.frame(t.p_values)
            p.index.name, p.columns.name = frame.index.name, frame.columns.name
            text += [f"{name}: p-value of each cell against {t.permutations} shuffles of B's "
                     f"examples (first {t.null_examples}; the smallest possible is "
                     f"{1 / (t.permutations + 1):.3f}):", _format_table(p), ""]
        undefined = {r for row in t.reasons for r in row if r}
        text += [f"  NaN: {r}" for r in sorted(undefined)]
    _emit({"a": str(net_a), "b": str(net_b), "dataset": ds.name, "split": split,
           "layout": layout, "tables": {k: t.to_dict() for k, t in tables.items()}},
          as_json, "\n".join(text).rstrip())


@app.command()
def replace(
    checkpoint: Path = typer.Argument(..., help="A trained network."),
    from_point: str = typer.Option(..., "--from", help="First cut point of the span."),
    to_point: str = typer.Option(..., "--to", help="Last cut point of the span."),
    objective: list[str] = typer.Option(
        None, help="match (autoencoder) and/or task (vanilla); default both, side by side."),
    stitch_type: str = typer.Option("bn-conv1x1-bn", "--stitch", help="Stitch type."),
    epochs: int = typer.Option(None, help=EPOCHS_HELP),
    batch_size: int = typer.Option(None, help="Batch size (default 64)."),
    lr: float = typer.Option(None, help=LR_HELP),
    fast: bool = typer.Option(False, "--fast", help=FAST_HELP),
    setting: list[str] = typer.Option(None, "--set", help=SET_HELP),
    granularity: str = typer.Option("block", help="block or layer: how indices are counted."),
    dataset: str = typer.Option(None, help="Default: the network's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    seed: int = typer.Option(None, help="Seed."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N (default auto)"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Replace the span --from..--to of one network by a stitch (autoencoder vs vanilla)."""
    from plato.checkpoint import load_checkpoint
    from plato.stitch import replace_span

    objectives = tuple(objective or ("match", "task"))
    config = _stitch_config(fast, setting, epochs=epochs, batch_size=batch_size, lr=lr,
                            seed=seed, device=device)
    ckpt = load_checkpoint(checkpoint)
    ds = _checkpoint_dataset(dataset, root, ckpt)
    results = replace_span(ckpt, from_point, to_point, ds, objectives=objectives,
                           stitch=stitch_type, config=config, granularity=granularity,
                           progress=not quiet)
    first = results[0]
    rows = [{"objective": r.objective, "accuracy": r.stitched_accuracy,
             "activation_mse": r.activation_mse, "activation_cka": r.activation_cka,
             "receiver_distance": r.receiver_distance, "stitch_loss": r.stitch_loss,
             "result": r.to_dict()} for r in results]
    text = [f"{ckpt.name}: span {first.sender_point} -> {first.receiver_point} replaced by "
            f"{stitch_type} ({first.stitch_parameters} parameters); original accuracy "
            f"{first.receiver_accuracy:.4f}",
            f"  {'objective':<10} {'accuracy':>9} {'MSE at to':>11} {'CKA':>7} "
            f"{'distance':>9}"]
    text += [f"  {r['objective']:<10} {r['accuracy']:>9.4f} {r['activation_mse']:>11.4g} "
             f"{r['activation_cka']:>7.4f} {r['receiver_distance']:>9.3g}" for r in rows]
    text.append(f"  distance: from the network's own activations at {first.receiver_point} "
                f"(RMS Mahalanobis per channel); its own test activations lie at "
                f"{first.receiver_own_distance:.3g}")
    obj = {"checkpoint": str(checkpoint), "from": first.sender_point, "to": first.receiver_point,
           "original_accuracy": first.receiver_accuracy, "replacements": rows,
           "config": config.to_dict()}
    _emit(obj, as_json, "\n".join(text))


INVERT_SET_HELP = "Any invert setting as FIELD=VALUE, repeatable: " + ", ".join(
    f"{k}={v}" for k, v in InvertConfig().to_dict().items()) + "."


@app.command()
def invert(
    checkpoint: Path = typer.Argument(..., help="Trained network's checkpoint."),
    points: list[str] = typer.Option(None, "--points", help="Cut points (names or indices), "
                                     "repeatable; default every block point."),
    out: Path = typer.Option(None, help="Run folder (default runs/invert-NAME); a rerun "
                             "resumes, computing only what is missing."),
    control: bool = typer.Option(True, help="Also reconstruct from a random-init control of "
                                 "the same architecture."),
    images: int = typer.Option(None, help="Test images shown and inverted by optimisation "
                               "(default 8)."),
    setting: list[str] = typer.Option(None, "--set", help=INVERT_SET_HELP),
    granularity: str = typer.Option("block", help="block or layer: which points exist."),
    dataset: str = typer.Option(None, help="Default: the network's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Reconstruct the input from cut points: a trained decoder and optimisation with a TV
    prior; PSNR/SSIM per point for the network and its random control, and image grids."""
    from plato.checkpoint import load_checkpoint
    from plato.device import resolve_device
    from plato.report.interpret import invert_figures
    from plato.sweep.interpret import inversions_table, run_inversions
    from plato.sweep.networks import Network, random_control
    from plato.sweep.store import Store
    from plato.train import evaluate

    given = dict(map(_setting, setting or []))
    if images is not None:
        given["images"] = images
    try:
        config = InvertConfig.from_user(given)
    except PlatoError as e:
        raise PlatoError(f"--set {e}") from None
    ckpt = load_checkpoint(checkpoint)
    ds = _checkpoint_dataset(dataset, root, ckpt)
    dev = resolve_device(device)
    name = checkpoint.name.removesuffix(".safetensors").removesuffix(".ckpt")
    run_dir = out or Path("runs") / f"invert-{name}"
    _check_writable(run_dir)
    acc = evaluate(ckpt.model.to(dev), ds, device=dev)["accuracy"]
    nets = [Network(name, "trained", ckpt.model, ckpt.content_hash, acc, str(checkpoint))]
    if control:
        nets.append(random_control(name, ckpt, 0, ds, dev))
    graph = nets[0].graph
    chosen = [graph.point(p, granularity)
              for p in points] if points else graph.points(granularity)
    spec = f"invert:{name}"
    with Store(run_dir / "results.sqlite") as store:
        keys, computed = run_inversions(spec, nets, {name: chosen}, ds, store, run_dir, config,
                                        dev, progress=not quiet)
        frame = inversions_table(store, keys)
    figures = invert_figures(frame, run_dir, f"{name} on {ds.name}")
    rows = frame.to_dict(orient="records")
    text = [f"{name}: reconstructions from {len(chosen)} cut points ({computed} computed, "
            f"{len(rows) - computed} from {run_dir / 'results.sqlite'})",
            f"  {'point':<12} {'role':<8} {'PSNR dB':>8} {'SSIM':>6} {'optimised':>10} "
            f"{'steps':>6} converged"]
    text += [f"  {r['point']:<12} {r['role']:<8} {r['psnr']:>8.2f} {r['ssim']:>6.3f} "
             f"{r['optimised_psnr']:>10.2f} {r['steps']:>6} "
             f"{'yes' if r['converged'] else 'NO (max_steps)'}" for r in rows]
    text += [f"  figure: {f}" for f in figures]
    keep = ["network", "role", "point", "point_index", "psnr", "ssim", "psnr_std", "ssim_std",
            "test_examples", "optimised_psnr", "optimised_ssim", "steps", "converged",
            "heldout_mse", "decoder_parameters", "shape", "file"]
    _emit({"checkpoint": str(checkpoint), "run": str(run_dir), "computed": computed,
           "points": [{k: None if isinstance(r.get(k), float) and r[k] != r[k] else r.get(k)
                       for k in keep} for r in rows],
           "figures": [str(f) for f in figures], "config": config.to_dict()},
          as_json, "\n".join(text))


SALIENCY_SET_HELP = "Any saliency setting as FIELD=VALUE, repeatable: " + ", ".join(
    f"{k}={','.join(v) if isinstance(v, list) else v}"
    for k, v in SaliencyConfig().to_dict().items()) + "."


@app.command()
def saliency(
    sender: Path = typer.Argument(..., help="Sender checkpoint (frozen up to --from)."),
    receiver: Path = typer.Argument(..., help="Receiver checkpoint (frozen from --to on)."),
    from_point: str = typer.Option(..., "--from", help="Sender cut point: name or index."),
    to_point: str = typer.Option(..., "--to", help="Receiver cut point: name or index."),
    methods: list[str] = typer.Option(None, "--method", help="integrated_gradients, "
                                      "gradient_x_input, grad_cam; repeatable (default all)."),
    images: int = typer.Option(None, help="Test images the scores average over (default 64)."),
    saliency_set: list[str] = typer.Option(None, "--saliency-set", help=SALIENCY_SET_HELP),
    stitch_type: str = typer.Option("bn-conv1x1-bn", "--stitch", help="Stitch type."),
    fast: bool = typer.Option(False, "--fast", help=FAST_HELP),
    setting: list[str] = typer.Option(None, "--set", help=SET_HELP),
    out: Path = typer.Option(Path("runs/saliency"), help="Folder for the picture."),
    granularity: str = typer.Option("block", help="block or layer: how indices are counted."),
    dataset: str = typer.Option(None, help="Default: the sender's training dataset."),
    root: Path = typer.Option(None, help="Folder holding the dataset's canonical files."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N (default auto)"),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stitch SENDER at --from into RECEIVER at --to, then explain the sender, the receiver and
    the stitched network on the same test images: agreement of their saliency maps (rank
    correlation) and faithfulness (deletion curve area), and a picture of the maps."""
    from plato.checkpoint import load_checkpoint
    from plato.device import resolve_device
    from plato.interpret.invert import shown_images
    from plato.interpret.saliency import explain_stitch, usable_methods
    from plato.models.cuts import CutGraph
    from plato.report.interpret import saliency_figure
    from plato.stitch import stitch_networks

    given = dict(_setting(t, "--saliency-set", "ig_steps=16") for t in saliency_set or [])
    given.update({k: v for k, v in (("images", images), ("methods", methods)) if v})
    try:
        sal_config = SaliencyConfig.from_user(given)
    except PlatoError as e:
        raise PlatoError(f"--saliency-set {e}") from None
    config = _stitch_config(fast, setting, device=device)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = _checkpoint_dataset(dataset, root, s_ckpt, r_ckpt)
    usable_methods(sal_config.methods,  # before the fit: a wrong method fails at once
                   CutGraph(s_ckpt.model).point(from_point, granularity),
                   CutGraph(r_ckpt.model).point(to_point, granularity))
    _check_writable(out)
    result, model = stitch_networks(s_ckpt, r_ckpt, from_point, to_point, ds,
                                    stitch=stitch_type, config=config, granularity=granularity,
                                    progress=not quiet)
    explained = explain_stitch(model, ds, sal_config, resolve_device(config.device))
    names = (f"{s_ckpt.path.stem}-{result.sender_point}-{r_ckpt.path.stem}-"
             f"{result.receiver_point}")
    originals = ds.test.images[shown_images(ds, sal_config.shown)]
    figure = saliency_figure(explained, originals, out / f"saliency-{names}.png",
                             f"{s_ckpt.path.stem}:{result.sender_point} -> "
                             f"{r_ckpt.path.stem}:{result.receiver_point} (stitched accuracy "
                             f"{result.stitched_accuracy:.3f})")
    text = [_result_line(result),
            f"saliency on {explained.images} test images (toward the true class):",
            f"  {'method':<22} {'rank correlation of the stitched map with':>44}   "
            f"{'deletion area (lower: more faithful)':>40}",
            f"  {'':<22} {'receiver':>14} {'sender':>14} {'sender~receiver':>15}   "
            f"{'sender':>8} {'receiver':>8} {'stitched':>8} {'random':>8}"]
    for method, n in explained.methods.items():
        text.append(f"  {method:<22} {n['agreement_receiver']:>14.3f} "
                    f"{n['agreement_sender']:>14.3f} {n['agreement_sender_receiver']:>15.3f}   "
                    f"{n['deletion_sender']:>8.3f} {n['deletion_receiver']:>8.3f} "
                    f"{n['deletion_stitched']:>8.3f} {n['deletion_random_order']:>8.3f}")
    text.append(f"  figure: {figure}")
    _emit({"stitch": result.to_dict(), "saliency": explained.to_dict(),
           "methods": {m: {k: None if v != v else v for k, v in n.items()}
                       for m, n in explained.methods.items()}, "figure": str(figure),
           "config": sal_config.to_dict()}, as_json, "\n".join(text))


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML)."),
    out: Path = typer.Option(None, help="Run folder (default runs/SPEC_NAME)."),
    executor: str = typer.Option("local", help="local, ray or slurm"),
    address: str = typer.Option(None, help="Ray cluster address (default: start a local one)."),
    gpus_per_job: float = typer.Option(0.0, help="GPUs per Ray task (fractional: 0.25) or "
                                       "per SLURM task (whole)."),
    partition: str = typer.Option(None, help="SLURM partition (default: the cluster's)."),
    time_min: int = typer.Option(60, min=1, help="SLURM: each task's time limit, minutes."),
    cpus_per_job: int = typer.Option(1, min=1, help="SLURM: CPUs per task (its threads)."),
    mem_gb: float = typer.Option(None, help="SLURM: memory per task, GB."),
    account: str = typer.Option(None, help="SLURM account to charge."),
    array_parallelism: int = typer.Option(64, min=1, help="SLURM: array tasks running at once, "
                                          "at most."),
    sbatch: list[str] = typer.Option(None, help="SLURM: another sbatch option, KEY=VALUE "
                                     "(repeatable: --sbatch qos=low)."),
    setup: list[str] = typer.Option(None, help="SLURM: a shell line each task runs first "
                                    "(repeatable: --setup 'module load cuda')."),
    retry_failed: bool = typer.Option(False, help="Run failed cells again."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N (local executor)."),
    threads: int = typer.Option(None, help="CPU threads per cell (ray default: 1)."),
    group_size: int = typer.Option(64, min=1, help="Cells sharing one pass of the frozen "
                                   "networks (a Ray task; lost together on a crash)."),
    wait: bool = typer.Option(False, help="If another sweep is running in the run folder, "
                              "wait for it to end (default: refuse)."),
    max_cells: int = typer.Option(200_000, help="Refuse a spec of more cells than this "
                                  "before any work."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """Run every cell of a sweep spec; resumes where a previous run stopped."""
    from plato.sweep.run import run_sweep
    from plato.sweep.slurm import SlurmOptions
    from plato.sweep.spec import load_spec

    extra = {}
    for item in sbatch or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PlatoError(f"--sbatch takes KEY=VALUE (an sbatch option without its dashes, "
                             f"e.g. qos=low), got '{item}'")
        extra[key.strip().lstrip("-")] = value
    if gpus_per_job and executor == "slurm" and gpus_per_job != int(gpus_per_job):
        raise PlatoError("--gpus-per-job must be a whole number for SLURM tasks")
    slurm = SlurmOptions(partition, time_min, cpus_per_job, int(gpus_per_job), mem_gb, account,
                         array_parallelism, extra, list(setup or []))
    summary = run_sweep(load_spec(spec), out, executor=executor, address=address,
                        gpus_per_job=gpus_per_job, retry_failed=retry_failed, device=device,
                        threads=threads, group_size=group_size, progress=not quiet,
                        wait=wait, max_cells=max_cells, slurm=slurm)
    _emit(summary.to_dict(), as_json,
          f"sweep {summary.spec}: {summary.cells} cells, {summary.skipped} already stored, "
          f"{summary.done} done, {summary.unstitchable} not stitchable, {summary.failed} "
          f"failed, in {summary.seconds:.1f} s\nstore: {summary.store}")


@app.command()
def status(
    run: Path = typer.Argument(..., help="A run folder (plato sweep --out)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Where a sweep stands: its cells in the store and, for --executor slurm, its tasks
    (queued, running, finished and waiting to be merged) with a rough time left."""
    from plato.sweep.slurm import task_status
    from plato.sweep.store import Store

    with Store(run / "results.sqlite", create=False) as db:
        cells = db.cells()
    counts = cells.status.value_counts().to_dict() if len(cells) else {}
    obj = {"cells": {k: int(v) for k, v in counts.items()}}
    text = ["cells: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none")]
    if (run / "slurm" / "submitted.json").exists():
        tasks = task_status(run)
        obj["slurm"] = tasks
        left = tasks["seconds_left"]
        text.append(f"slurm tasks: {tasks['tasks']} submitted; {tasks['queued']} queued, "
                    f"{tasks['running']} running, {tasks['finished']} finished and not yet "
                    f"merged (plato sweep merges them), {tasks['merged or ended']} merged or "
                    "ended" + (f"; about {left / 60:.0f} min left (rough)" if left else ""))
    _emit(obj, as_json, "\n".join(text))


@app.command()
def table(
    store: Path = typer.Argument(..., help="A sweep's results.sqlite."),
    spec: str = typer.Option(None, help="This spec's cells (needed when the store holds "
                             "several)."),
    all_specs: bool = ALL_SPECS_OPT,
    pair: tuple[str, str] | None = typer.Option(None, help="SENDER RECEIVER (default: all)."),
    control: str = typer.Option("trained->trained", help="Which control's table."),
    metric: str = typer.Option("stitched_accuracy",
                               help="stitched_accuracy, normalized_accuracy, activation_mse, "
                                    "activation_cka, ..., or a similarity measure of the "
                                    "spec (cka, procrustes, ...)"),
    stat: str = typer.Option("mean", help="mean, std or n over seeds."),
    debiased: str = typer.Option(None, help="diff or normalized: trained minus --control."),
    ci: bool = typer.Option(False, "--ci", help="Each cell's 95% interval: over seeds, else "
                            "over test examples; debiased: paired with the control."),
    latest: bool = typer.Option(False, help="Also the latest stitchable receiver point."),
    threshold: float = typer.Option(0.9, help="Fraction of receiver accuracy for --latest."),
    level: float = typer.Option(None, help="A compression axis's level (an amount or a "
                                "temperature): only the tables of the networks at it; a "
                                "family's name in --pair means its network at it."),
    csv: Path = typer.Option(None, help="Export every aggregated cell (long form) as CSV."),
    parquet: Path = typer.Option(None, help="The same as Parquet."),
    as_json: bool = JSON_OPT,
) -> None:
    """Print similarity tables (rows = sender points, columns = receiver points)."""
    from plato.sweep import tables as T
    from plato.sweep.store import Store

    with Store(store, create=False) as db:
        spec = db.one_spec(spec, all_specs)
        cells = T.load_for_metric(db, spec, metric)
        networks = db.networks(spec)
    at_level = None
    if level is not None:
        at_level = T.networks_at_level(networks, level)
        if not at_level:
            levels = sorted(T.compressed_networks(networks).level.dropna().unique())
            raise PlatoError(f"no compressed network at level {level:g}: the levels of this "
                             "store's compression axes are "
                             f"{', '.join(f'{v:g}' for v in levels) or '(none)'}")
        if pair:
            pair = tuple(at_level.get(n, n) for n in pair)
    if csv or parquet:
        long = T.tidy(cells)
        if csv:
            long.to_csv(csv, index=False)
        if parquet:
            long.to_parquet(parquet, index=False)
    if debiased and debiased not in ("diff", "normalized"):
        raise PlatoError(f"--debiased must be diff or normalized, got '{debiased}'")
    out, text = [], [f"spec {spec}" if spec else "every spec of the store, pooled", ""]
    chosen = T.select_tables(cells, pair, control, bool(debiased))
    if at_level is not None:
        chosen = [k for k in chosen if {k[0], k[1]} & set(at_level.values())]
        if not chosen:
            raise PlatoError(f"no table of {', '.join(at_level.values())} (level {level:g}) "
                             f"for control {control}")
    for s, r, c in chosen:
        if debiased:
            m = T.debiased_table(cells, s, r, metric, control, debiased == "normalized")
            title = f"{s} -> {r}: {metric}, debiased ({debiased}) against {control}"
        else:
            m = T.stat_table(cells, s, r, c, metric, stat)
            title = f"{s} -> {r} ({c}): {metric} {stat}"
        entry = {"spec": spec, "sender": s, "receiver": r, "control": c, "metric": metric,
                 "stat": "debiased-" + debiased if debiased else stat,
                 "rows": list(m.index), "columns": list(m.columns), "values": _matrix(m)}
        if ci:
            if debiased == "normalized":
                low = high = m * float("nan")
                title += " (no interval: the denominator is an estimate too; use diff)"
            elif debiased:
                low, high = T.debiased_interval(cells, s, r, control)
            else:
                low = T.stat_table(cells, s, r, c, metric, "low")
                high = T.stat_table(cells, s, r, c, metric, "high")
            entry["low"], entry["high"] = _matrix(low), _matrix(high)
            text += [title + ", with 95% intervals", _format_intervals(m, low, high)]
            if (m.notna() & low.isna()).to_numpy().any():
                text.append("[n/a]: no interval: one seed of a metric other than stitched "
                            "accuracy, or cells stored before per-example outcomes were kept")
            text.append("")
        else:
            text += [title, _format_table(m), ""]
        if latest and not debiased:
            ls = T.latest_table(cells, s, r, c, threshold=threshold)
            entry["latest_stitchable"] = ls.to_dict()
            text += [ls.name, ls.fillna("none").to_string(), ""]
        out.append(entry)
    _emit({"tables": out}, as_json, "\n".join(text).rstrip())


@app.command()
def report(
    store: Path = typer.Argument(..., help="A sweep's results.sqlite."),
    out: Path = typer.Option(..., help="Folder for report.html and the heatmaps."),
    spec: str = typer.Option(None, help="This spec's cells (needed when the store holds "
                             "several)."),
    all_specs: bool = ALL_SPECS_OPT,
    metric: str = typer.Option("stitched_accuracy", help="The metric of the tables."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write heatmaps (PNG) and one self-contained report.html."""
    from plato.report import write_report

    path = write_report(store, out, spec=spec, metric=metric, all_specs=all_specs)
    _emit({"report": str(path)}, as_json, f"report: {path}")


@app.command()
def check(
    store: Path = typer.Argument(..., help="A sweep's results.sqlite."),
    spec: str = typer.Option(None, help="This spec's cells (needed when the store holds "
                             "several)."),
    all_specs: bool = ALL_SPECS_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Sanity checks of a store: self-pairs, controls, layer identification, convergence.
    Exits 1 when a check fails."""
    from plato.sweep.checks import run_checks
    from plato.sweep.store import Store

    with Store(store, create=False) as db:
        checks = run_checks(db, db.one_spec(spec, all_specs))
    failed = [c.name for c in checks if c.passed is False]
    mark = {True: "pass", False: "FAIL", None: "n/a "}
    _emit({"checks": [c.to_dict() for c in checks], "failed": failed}, as_json,
          "\n".join(f"{mark[c.passed]}  {c.name}: {c.detail}" for c in checks))
    if failed:
        raise typer.Exit(1)


DEMO_SPEC = """\
# The demo: two small networks of different architectures on the bundled digits data,
# every ordered pair (self-pairs included), with random-sender controls, and minibatch CKA
# beside the stitching tables.
name: demo
dataset: digits
networks:
  resnet: {train: {model: resnet-1111, width: 8, epochs: 15, batch_size: 64, seed: 0}}
  cnn: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 1}}
pairs: all
points: all
controls: [trained->trained, random->trained]
seeds: [0]
stitch: bn-conv1x1-bn
objective: lstsq+task
recipe: {epochs: 2, batch_size: 64, lr: 0.003}
measures: [stitch, cka]
similarity: {batch_size: 120}
"""


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's outputs."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    as_json: bool = JSON_OPT,
) -> None:
    """The whole pipeline on `digits`: train two networks, sweep all tables, write a report."""
    from plato.report import write_report
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec

    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "demo.yaml"
    spec_path.write_text(DEMO_SPEC)
    summary = run_sweep(load_spec(spec_path), out, device="cpu", progress=not quiet)
    path = write_report(summary.store, out, spec="demo")
    obj = {**summary.to_dict(), "report": str(path)}
    _emit(obj, as_json, f"demo: {summary.cells} cells ({summary.done} stitched, "
          f"{summary.unstitchable} not stitchable, {summary.failed} failed) in "
          f"{summary.seconds:.0f} s\nreport: {path}")


def _format_table(table, digits: int = 3) -> str:
    """A table for the terminal: NaN cells are blank."""
    return table.to_string(na_rep="", float_format=lambda v: f"{v:.{digits}f}")


def _format_intervals(table, low, high, digits: int = 3) -> str:
    """value [low, high] per cell; a NaN value is blank, a NaN interval `[n/a]`."""
    def cell(v, lo, hi):
        if v != v:
            return ""
        return f"{v:.{digits}f} " + (f"[{lo:.{digits}f}, {hi:.{digits}f}]" if lo == lo
                                     else "[n/a]")

    shown = table.astype(object)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            shown.iat[i, j] = cell(table.iat[i, j], low.iat[i, j], high.iat[i, j])
    return shown.to_string()


def _matrix(table) -> list[list[float | None]]:
    """A table's values for JSON: NaN as null."""
    return [[None if v != v else float(v) for v in row] for row in table.to_numpy()]


def main() -> None:
    try:
        app()
    except PlatoError as e:
        print(f"plato: error: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, sqlite3.Error, SafetensorError) as e:  # a full disk, a read-only place
        if os.environ.get("PLATO_TRACEBACK"):
            raise
        print(f"plato: error: {fault_message(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("plato: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
