"""The networks of a sweep: the trained ones (a checkpoint, or a model the sweep trains once
and caches in the run folder) and their random controls (the same architecture freshly
initialised from a recorded seed)."""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from plato.checkpoint import Checkpoint, load_checkpoint, read_metadata
from plato.data.datasets import Dataset
from plato.errors import PlatoError
from plato.models import CutGraph, create_model, model_options
from plato.sweep.keys import content_key
from plato.sweep.spec import NetworkSpec, SpecError, SweepSpec
from plato.train import Recipe, evaluate, train_and_save


@dataclass
class Network:
    name: str
    role: str  # "trained" or "random"
    model: nn.Module
    identity: str  # the weights' hash, or architecture + init seed for a random control
    accuracy: float
    checkpoint: str | None = None
    init_seed: int | None = None
    _graph: CutGraph | None = None

    @property
    def graph(self) -> CutGraph:
        if self._graph is None:
            self._graph = CutGraph(self.model)
        return self._graph

    def payload(self) -> dict:
        """What a remote worker needs to rebuild this network: no files, no pickled modules."""
        return {"name": self.name, "role": self.role, "identity": self.identity,
                "accuracy": self.accuracy, "model": self.model.plato_name,
                "config": self.model.plato_config,
                "recipe": getattr(self.model, "plato_recipe", None),  # the stitch loss follows it
                "state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    @classmethod
    def from_payload(cls, payload: dict) -> Network:
        model = create_model(payload["model"], **payload["config"])
        model.load_state_dict(payload["state"])
        model.plato_recipe = payload["recipe"]
        return cls(payload["name"], payload["role"], model.eval(), payload["identity"],
                   payload["accuracy"])


def prepare_networks(spec: SweepSpec, dataset: Dataset, run_dir: Path, device: torch.device,
                     progress: bool = True, whole: Dataset | None = None
                     ) -> dict[tuple[str, str], Network]:
    """Every network of the spec in each role its controls need, by (name, role). `whole` is
    the dataset before the spec's subsets, for networks trained with `train_subset`."""
    roles = {role for c in spec.controls for role in c.split("->")}
    nets: dict[tuple[str, str], Network] = {}
    for name, entry in spec.networks.items():
        path = entry.checkpoint or _trained(entry, training_data(entry, dataset, whole),
                                            run_dir, device, progress)
        try:
            ckpt = load_checkpoint(path, device=device)
            ckpt.check_dataset(dataset)
        except PlatoError as e:
            raise SpecError(f"spec field 'networks.{name}': {e}") from None
        if "trained" in roles:
            acc = evaluate(ckpt.model, dataset, device=device)["accuracy"]
            nets[(name, "trained")] = Network(name, "trained", ckpt.model, ckpt.content_hash,
                                              acc, str(path))
        if "random" in roles:
            nets[(name, "random")] = random_control(name, ckpt, spec.random_seed, dataset,
                                                    device)
    return nets


def random_control(name: str, ckpt: Checkpoint, random_seed: int, dataset: Dataset,
                   device: torch.device) -> Network:
    """The network's random-init control: its architecture, freshly initialised from a seed
    recorded in the store (derived from `random_seed` and the network's name)."""
    init_seed = zlib.crc32(f"{random_seed}:{name}".encode())
    torch.manual_seed(init_seed)
    cfg = ckpt.meta["config"]
    model = create_model(ckpt.name, **cfg).to(device).eval()
    identity = content_key(["random", ckpt.name, cfg, init_seed])
    acc = evaluate(model, dataset, device=device)["accuracy"]
    return Network(name, "random", model, identity, acc, init_seed=init_seed)


def architectures(spec: SweepSpec, dataset: Dataset) -> dict[str, nn.Module]:
    """Each network of the spec built untrained, without training or loading weights: what a
    sweep can plan from (its cut points) before any work."""
    out = {}
    for name, entry in spec.networks.items():
        try:
            if entry.checkpoint is not None:
                meta = read_metadata(entry.checkpoint)
                out[name] = create_model(meta["model"], **meta["config"])
            else:
                options = _model_options(entry.train)
                out[name] = create_model(entry.train["model"], num_classes=dataset.num_classes,
                                         input_shape=dataset.input_shape, **options)
        except PlatoError as e:
            where = "checkpoint" if entry.checkpoint is not None else "train"
            raise SpecError(f"spec field 'networks.{name}.{where}': {e}") from None
    return out


def _model_options(train: dict) -> dict:
    """The options of a train entry that build the model (width, batchnorm, ...: whatever
    its model takes; the rest is its Recipe)."""
    return {k: train[k] for k in model_options(train["model"]) if k in train}


def _mismatch(path: Path, model: str, options: dict, recipe: dict) -> str | None:
    """How a cached checkpoint differs from the network it was cached for (another file put
    in its place, or a damaged one), or None. Recipe fields a checkpoint predates are not
    compared; where it ran (device) never is."""
    try:
        meta = read_metadata(path)
    except PlatoError as e:
        return str(e)
    if meta["model"] != model:
        return f"model {meta['model']}, not {model}"
    for name, value in options.items():
        if meta["config"].get(name) != value:
            return f"{name} {meta['config'].get(name)}, not {value}"
    stored = meta.get("recipe") or {}
    for name, value in recipe.items():
        if name != "device" and name in stored and stored[name] != value:
            return f"trained with {name} {stored[name]}, not {value}"
    return None


def training_data(entry: NetworkSpec, dataset: Dataset, whole: Dataset | None) -> Dataset:
    """What a network the spec trains is trained on: the spec's dataset, or with
    `train_subset` all (or N) of the training split before the spec's subset."""
    subset = entry.train.get("train_subset")
    if subset is None:
        return dataset
    if whole is None:
        raise SpecError(f"spec field 'networks.{entry.name}.train.train_subset': "
                        "needs the whole dataset (prepare_networks(..., whole=))")
    return whole if subset == "all" else whole.subset(train=subset)


def cached_checkpoint(entry: NetworkSpec, dataset: Dataset, run_dir: Path) -> Path:
    """Where the sweep keeps the network a train entry makes from `dataset` (the file name
    holds a hash of the entry and the data): there or not yet."""
    digest = content_key([entry.train, dataset.fingerprint()])[:12]
    return run_dir / "networks" / f"{entry.name}-{digest}.ckpt"


def recipe_settings(train: dict) -> dict:
    """The fields of a train entry that make its Recipe (the rest builds the model or picks
    its data)."""
    return {k: v for k, v in train.items()
            if k not in ("model", "train_subset", *_model_options(train))}


def _trained(entry: NetworkSpec, dataset: Dataset, run_dir: Path, device: torch.device,
             progress: bool) -> Path:
    """The checkpoint of a network the spec trains: trained on the first run, then reused
    (the file name holds a hash of the train entry and the data)."""
    path = cached_checkpoint(entry, dataset, run_dir)
    options = _model_options(entry.train)
    settings = recipe_settings(entry.train)
    if path.exists():
        mismatch = _mismatch(path, entry.train["model"], options,
                             Recipe(**settings, device=str(device)).to_dict())
        if mismatch is None:
            return path
        print(f"the cached checkpoint {path} is not the network its name says ({mismatch}): "
              "training it again", file=sys.stderr, flush=True)
    print(f"training network '{entry.name}' ({entry.train['model']})", file=sys.stderr,
          flush=True)
    try:
        train_and_save(entry.train["model"], dataset, Recipe(**settings, device=str(device)),
                       path, progress=progress, **options)
    except PlatoError as e:
        raise SpecError(f"spec field 'networks.{entry.name}.train': {e}") from None
    return path
