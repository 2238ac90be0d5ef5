"""The options several commands share, each declared once (as a typed alias a command's
signature names), their help read from the config objects whose defaults they mean; and the
parsing of what a command line gives (FIELD=VALUE settings, shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plato.data.datasets import list_datasets
from plato.errors import PlatoError
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.stitch import OBJECTIVES, StitchConfig
from plato.stitch.registry import list_stitch_types
from plato.train import Recipe

CONVERGING = StitchConfig.converging()
FIXED = StitchConfig()
RECIPE = Recipe()
DATASET_HELP = ", ".join(n for n in list_datasets() if ":" not in n) + " or imagefolder:PATH"


def _choices(values) -> str:
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


# -- every command -------------------------------------------------------------------------

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")]
DeviceOrConfig = Annotated[str | None, typer.Option(
    "--device", help=f"auto, cpu, cuda, cuda:N (default {CONVERGING.device})")]
Root = Annotated[Path | None, typer.Option(
    help="Folder holding the dataset's canonical files.")]
Granularity = Annotated[str, typer.Option(help="block or layer: how indices are counted.")]

# -- data ----------------------------------------------------------------------------------

Dataset = Annotated[str, typer.Option(help=DATASET_HELP)]
# --dataset where a checkpoint's own is the default
SendersDataset = Annotated[str | None, typer.Option(
    "--dataset", help="Default: the sender's training dataset.")]
NetworksDataset = Annotated[str | None, typer.Option(
    "--dataset", help="Default: the network's training dataset.")]
TrainedDataset = Annotated[str | None, typer.Option(
    "--dataset", help="Default: the dataset it was trained on.")]


# -- stores ----------------------------------------------------------------------------------

Store = Annotated[Path, typer.Argument(help="A sweep's results.sqlite.")]
MlflowUri = Annotated[str | None, typer.Option(
    "--mlflow", help="Also log every cell's metrics, the checks and the report to this MLflow "
    "tracking URI (a folder, file:, http(s): or databricks; the `mlflow` extra).")]
SpecName = Annotated[str | None, typer.Option(
    "--spec", help="This spec's cells (needed when the store holds several).")]
AllSpecs = Annotated[bool, typer.Option(
    "--all-specs", help="Pool the cells of every spec in the store (default: one spec; they "
    "are different experiments).")]

# -- stitching -----------------------------------------------------------------------------

Sender = Annotated[Path, typer.Argument(help="Sender checkpoint (frozen up to --from).")]
Receiver = Annotated[Path, typer.Argument(help="Receiver checkpoint (frozen from --to on).")]
FromPoint = Annotated[str, typer.Option("--from", help="Sender cut point: name or index.")]
ToPoint = Annotated[str, typer.Option("--to", help="Receiver cut point: name or index.")]
StitchType = Annotated[str, typer.Option(
    "--stitch", help=f"The stitch type: {_choices(list_stitch_types())} "
    "(plato.stitch.registry).")]
Objective = Annotated[str | None, typer.Option(
    help=f"{_choices(OBJECTIVES)} (default {CONVERGING.objective})")]
Epochs = Annotated[int | None, typer.Option(
    help=f"A fixed budget of this many SGD epochs (the fields of StitchConfig(): "
    f"{FIXED.optimizer.capitalize()} {FIXED.lr:g}, batch {FIXED.batch_size}) instead of the "
    "default, which trains until a held-out slice of the training split stops improving.")]
BatchSize = Annotated[int | None, typer.Option(
    help=f"Batch size (default {CONVERGING.batch_size}).")]
Lr = Annotated[float | None, typer.Option(
    help=f"Learning rate (default {CONVERGING.lr:g}, {CONVERGING.optimizer.upper()}, tenfold "
    "lower after the first plateau).")]
Fast = Annotated[bool, typer.Option(
    "--fast", help="Start from the fast grid setting (StitchConfig.fast(): the default's "
    f"rule, looser and capped at {StitchConfig.fast(device='cpu').max_steps:,} steps, from a "
    f"closed form on {CONVERGING.lstsq_examples:,} examples).")]
Settings = Annotated[list[str] | None, typer.Option(
    "--set", help="Any stitch setting as FIELD=VALUE, repeatable: " + ", ".join(
        f"{name}={str(default).lower() if isinstance(default, bool) else default}"
        for name, default in CONVERGING.to_dict().items()) + ".")]
Seed = Annotated[int | None, typer.Option(
    help="Seed of the stitch's initialisation and data order.")]
InvertSettings = Annotated[list[str] | None, typer.Option(
    "--set", help="Any invert setting as FIELD=VALUE, repeatable: " + ", ".join(
        f"{k}={v}" for k, v in InvertConfig().to_dict().items()) + ".")]
SaliencySettings = Annotated[list[str] | None, typer.Option(
    "--saliency-set", help="Any saliency setting as FIELD=VALUE, repeatable: " + ", ".join(
        f"{k}={','.join(v) if isinstance(v, list) else v}"
        for k, v in SaliencyConfig().to_dict().items()) + ".")]

# -- networks ----------------------------------------------------------------------------------

ModelOptions = Annotated[list[str] | None, typer.Option(
    "--option", help="Any option of the model as KEY=VALUE, repeatable (e.g. vgg11: "
    "batchnorm=false, hidden=256, dropout=0).")]


# -- parsing ---------------------------------------------------------------------------------

def setting(text: str, flag: str = "--set",
            example: str = "optimizer=sgd") -> tuple[str, int | float | bool | str | None]:
    """FIELD=VALUE from the command line, the value typed as it reads: 4096, 0.1, 1e-3,
    true, null (YAML's words), sgd."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise PlatoError(f"{flag} takes {'FIELD' if flag == '--set' else 'NAME'}=VALUE "
                         f"(e.g. {example}), got '{text}'")
    for kind in (int, float):
        try:
            return name.strip(), kind(value)
        except ValueError:
            pass
    words = {"true": True, "false": False, "null": None}
    return name.strip(), words[value.lower()] if value.lower() in words else value


def settings(texts: list[str] | None, flag: str = "--set", example: str = "optimizer=sgd",
             given: dict | None = None, what: str = "setting") -> dict:
    """Every FIELD=VALUE of a repeatable option over `given` (the dedicated options, None
    left out); a field given twice is refused."""
    out = {k: v for k, v in (given or {}).items() if v is not None}
    for name, value in (setting(t, flag, example) for t in texts or []):
        if name in out:
            raise PlatoError(f"the {what} '{name}' is given twice")
        out[name] = value
    return out


def stitch_config(fast: bool, texts: list[str] | None, **options) -> StitchConfig:
    """The options given (not None) and the --set FIELD=VALUE settings, over the default they
    mean (StitchConfig.from_user: converging; a fixed budget with --epochs; or --fast)."""
    return StitchConfig.from_user(settings(texts, given=options, what="stitch setting"), fast)


def parse_shape(text: str) -> tuple[int, int, int]:
    """C,H,W (or CxHxW) from the command line."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise PlatoError(f"input shape must be C,H,W (e.g. 3,32,32), got '{text}'")
    return shape
