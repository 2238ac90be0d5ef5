"""Checkpoints: weights in safetensors, JSON metadata in the same file's header. Never pickle.

The metadata records everything needed to rebuild the model (name and config), where it came
from (dataset, recipe, seed, accuracy, versions) and a SHA-256 of the weights, checked on load:
a truncated file, altered weights, or metadata that does not fit the weights are refused.
A network with channels removed (structured pruning) is saved with `narrowed: true`: its
weights' shapes, not its config, give its layers' widths, and loading cuts the model its
config builds to them (plato.models.narrow).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from plato.errors import CheckpointError, PlatoError, fault_message
from plato.files import write_safetensors

FORMAT = "plato-checkpoint/1"


def weights_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.meta["model"]

    @property
    def test_accuracy(self) -> float | None:
        return self.meta.get("test_accuracy")

    def check_dataset(self, dataset) -> None:
        """Refuse a dataset whose images or classes this network does not take. A network with
        its own input size (`input.size`: resized to it) takes images of any size with its
        number of channels."""
        cfg = self.meta["config"]
        shape, classes = tuple(cfg["input_shape"]), cfg["num_classes"]
        resized = bool((self.meta.get("input") or {}).get("size"))
        takes = shape[:1] == dataset.input_shape[:1] if resized else shape == dataset.input_shape
        if not takes or classes != dataset.num_classes:
            raise CheckpointError(
                f"{self.path or self.name} expects {classes} classes of shape {shape}"
                f"{' (any size: it resizes)' if resized else ''}; "
                f"{dataset.name} has {dataset.num_classes} of shape {dataset.input_shape}")

    def for_dataset(self, dataset) -> nn.Module:
        """The model, checked against `dataset` and fed its own input where it has one
        (`input`: normalisation and size, plato.models.inputs): what every path that runs it on
        the dataset's images uses (plato.checkpoint.dataset_for, a sweep's networks)."""
        from plato.models.inputs import feed_recorded_input, own_input

        self.check_dataset(dataset)
        spec, fed = self.meta.get("input"), own_input(self.model)
        if spec and fed is None:
            feed_recorded_input(self.model, spec, dataset)
        elif spec and (fed.data_mean, fed.data_std) != (tuple(dataset.mean),
                                                        tuple(dataset.std)):
            raise CheckpointError(f"{self.path or self.name} is fed from another dataset's "
                                  "statistics already: load it again for this one")
        return self.model

    @property
    def trained_on(self) -> str:
        """The data it was trained on, in words (`data`, recorded by Plato's training since
        it was added; an imported network's is not known)."""
        data = self.meta.get("data")
        if not data:
            return "not recorded"
        return (f"{data['name']}: {data['train_examples']:,} training images (sha256 "
                f"{data['fingerprint'][:12]})")

    @property
    def normalisation(self) -> str:
        """Which input the network takes, in words (what the commands print)."""
        spec = self.meta.get("input") or {}
        said = "the dataset's" if not spec.get("mean") else (
            f"its own (mean {', '.join(f'{m:g}' for m in spec['mean'])}; std "
            f"{', '.join(f'{s:g}' for s in spec['std'])})")
        if spec.get("size"):
            said += f"; images resized to {spec['size'][0]}x{spec['size'][1]}"
        return said

    @property
    def content_hash(self) -> str:
        """Identifies the network: its weights, how to build it, and the normalisation it
        takes where it has its own (checkpoints without one keep their hash)."""
        own = [self.meta["input"]] if self.meta.get("input") else []
        ident = json.dumps([self.meta["model"], self.meta["config"], self.meta["weights_sha256"],
                            *own], sort_keys=True)
        return hashlib.sha256(ident.encode()).hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, **meta) -> Checkpoint:
    """Save a zoo model (built by create_model) with metadata such as dataset, recipe, accuracy.

    Refuses non-finite weights: a NaN model is never saved.
    """
    from safetensors import SafetensorError

    from plato import __version__
    from plato.models.inputs import own_input

    if not hasattr(model, "plato_name"):
        raise PlatoError("only models built by plato.create_model can be saved as checkpoints")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"refusing to save: '{k}' holds NaN or infinite values")
    fed = own_input(model)  # the normalisation and size it takes, where not the dataset's
    if fed is not None:
        own = {"mean": list(fed.mean), "std": list(fed.std)} if fed.renormalises else {}
        meta = {"input": {**own, **({"size": list(fed.size)} if fed.size else {})}, **meta}
    full = {
        "format": FORMAT,
        **({"narrowed": True} if _narrowed(model, tensors) else {}),
        "model": model.plato_name,
        "config": model.plato_config,
        **meta,
        "plato_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "weights_sha256": weights_hash(tensors),
    }
    path = Path(path)
    try:  # whole or not at all: a crash never leaves half a checkpoint under the real name
        write_safetensors(path, tensors, {"plato": json.dumps(full, sort_keys=True)})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot save the checkpoint {path}: "
                              f"{fault_message(e)}") from None
    model.plato_recipe = full.get("recipe")  # as load_checkpoint gives it
    return Checkpoint(model, full, path)


def _narrowed(model: nn.Module, tensors: dict[str, torch.Tensor]) -> bool:
    """Whether the weights have other shapes than the model's config builds (built on the
    meta device: no memory, no initialisation)."""
    from plato.models import create_model
    from plato.models.narrow import narrowed_tensors, shapes_of

    try:
        with torch.device("meta"):
            built = create_model(model.plato_name, **model.plato_config)
    except (PlatoError, RuntimeError, NotImplementedError):
        return False  # (a model from outside the zoo that cannot be built there)
    return bool(narrowed_tensors(built, shapes_of(tensors)))


def read_metadata(path: str | Path) -> dict:
    """The metadata alone, without building the model."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get("plato")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}): it is truncated or corrupt"
        ) from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a Plato checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the checkpoint metadata is not valid JSON") from None
    missing = [k for k in ("format", "model", "config", "weights_sha256") if k not in meta]
    if missing or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata lacks {missing or 'a known format'}")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from the metadata and load the verified weights into it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from plato.models import create_model
    from plato.models.narrow import narrow_to, shapes_of

    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: cannot read the weights ({e}); the file is corrupt"
        ) from None
    if weights_hash(tensors) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{path}: the weights do not match the checksum in the metadata: the file was "
            "altered or damaged; retrain or restore it"
        )
    try:
        model = create_model(meta["model"], **meta["config"])
        if meta.get("narrowed"):
            narrow_to(model, shapes_of(tensors))
        model.load_state_dict(tensors, strict=True)
    except (PlatoError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: the metadata (model '{meta['model']}', config {meta['config']}) does not "
            f"match the weights: {first}"
        ) from None
    model.to(device).eval()
    model.plato_recipe = meta.get("recipe")  # how it was trained: a stitch's loss follows it
    return Checkpoint(model, meta, path)


def dataset_for(checkpoints: list[Checkpoint], name: str | None = None,
                root: str | Path | None = None):
    """The dataset named, else the first checkpoint's own; every checkpoint must take it, and
    is fed its own normalisation where it has one (Checkpoint.for_dataset)."""
    from plato.data import load_dataset

    name = name or checkpoints[0].meta.get("dataset")
    if not name:
        raise PlatoError(f"{checkpoints[0].path} records no dataset: pass --dataset")
    ds = load_dataset(name, root=root)
    for ckpt in checkpoints:
        ckpt.for_dataset(ds)  # fed its own normalisation where it has one
    return ds
