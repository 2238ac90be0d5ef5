"""The networks of a sweep: the trained ones (a checkpoint, or a model the sweep trains,
prunes or distils once and caches in the run folder) and their random controls (the same
architecture freshly initialised from a recorded seed)."""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from plato.checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
from plato.data.datasets import Dataset
from plato.errors import PlatoError, printable
from plato.models import CutGraph, create_model, cut_graph
from plato.models.inputs import feed_own_input, feed_recorded_input, own_input
from plato.models.narrow import narrow_to, shapes_of, tensor_shapes
from plato.sweep.entries import (
    DistilledNetwork,
    ImportedNetwork,
    NetworkEntry,
    PrunedNetwork,
    TrainedNetwork,
    compression_of,
)
from plato.sweep.keys import content_key
from plato.sweep.spec import SpecError, SweepSpec
from plato.train import data_record, evaluate, train_and_save


@dataclass
class Network:
    name: str
    role: str  # "trained" or "random"
    model: nn.Module
    identity: str  # the weights' hash, or architecture + init seed for a random control
    accuracy: float
    checkpoint: str | None = None
    init_seed: int | None = None
    compression: dict | None = None  # pruned or distilled: how, from what, at which level
    trained_on: str | None = None  # its training data in words (Checkpoint.trained_on)
    _graph: CutGraph | None = None

    @property
    def graph(self) -> CutGraph:
        if self._graph is None:
            self._graph = cut_graph(self.model)
        return self._graph

    def payload(self) -> dict:
        """What a remote worker needs to rebuild this network: no files, no pickled modules."""
        return {"name": self.name, "role": self.role, "identity": self.identity,
                "accuracy": self.accuracy, "model": self.model.plato_name,
                "config": self.model.plato_config,
                "recipe": getattr(self.model, "plato_recipe", None),  # the stitch loss follows it
                "input": fed.spec() if (fed := own_input(self.model)) else None,
                "state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    @classmethod
    def from_payload(cls, payload: dict) -> Network:
        model = create_model(payload["model"], **payload["config"])
        narrow_to(model, shapes_of(payload["state"]))
        model.load_state_dict(payload["state"])
        if payload.get("input"):  # the normalisation it takes (plato.models.inputs)
            feed_own_input(model, **payload["input"])
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
    made = _Made(spec, dataset, whole, run_dir, device, progress)
    for name, entry in spec.networks.items():
        try:
            ckpt = load_checkpoint(made.path(name), device=device)
            ckpt.for_dataset(dataset)  # fed its own normalisation where it has one
        except PlatoError as e:
            raise SpecError(f"spec field 'networks.{name}': {e}") from None
        compression = _compression(entry, ckpt)
        if "trained" in roles:
            acc = evaluate(ckpt.model, dataset, device=device)["accuracy"]
            # A compressed network's identity holds how it was made: at amount 0 it has its
            # source's weights, but its cells are its own.
            identity = ckpt.content_hash if compression is None else content_key(
                [ckpt.content_hash, ckpt.meta.get("made_from")])
            nets[(name, "trained")] = Network(name, "trained", ckpt.model, identity, acc,
                                              str(made.path(name)), compression=compression,
                                              trained_on=ckpt.trained_on)
        if "random" in roles:
            nets[(name, "random")] = random_control(name, ckpt, spec.random_seed, dataset,
                                                    device)
    return nets


def _compression(entry: NetworkEntry, ckpt: Checkpoint) -> dict | None:
    """The spec's description of a compressed network with what its checkpoint measured
    (sparsity, parameters, the student's and teacher's accuracy)."""
    described = compression_of(entry)
    if described is None:
        return None
    measured = ckpt.meta.get("pruned") or ckpt.meta.get("distilled") or {}
    return {**described, **{k: v for k, v in measured.items() if k not in described}}


class _Made:
    """Each network's checkpoint, made on first use (a compressed network needs its source
    first): a given file, or one the sweep trains, prunes or distils once into the run
    folder's `networks/` and finds there on every later run."""

    def __init__(self, spec: SweepSpec, dataset: Dataset, whole: Dataset | None,
                 run_dir: Path, device: torch.device, progress: bool) -> None:
        self.spec, self.dataset, self.whole = spec, dataset, whole
        self.run_dir, self.device, self.progress = run_dir, device, progress
        self.paths: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        if name not in self.paths:
            entry = self.spec.networks[name]
            if isinstance(entry, ImportedNetwork):
                self.paths[name] = entry.checkpoint
            elif isinstance(entry, TrainedNetwork):
                self.paths[name] = _trained(entry, training_data(entry, self.dataset, self.whole),
                                            self.run_dir, self.device, self.progress)
            else:
                self.paths[name] = self._compressed(entry)
        return self.paths[name]

    def _compressed(self, entry: PrunedNetwork | DistilledNetwork) -> Path:
        where = f"networks.{entry.axis.family or entry.name}.{entry.kind}"
        try:
            source = load_checkpoint(self.path(entry.source), device=self.device)
            source.for_dataset(self.dataset)  # fed its own normalisation where it has one
        except PlatoError as e:
            raise SpecError(f"spec field '{where}': its source '{entry.source}': {e}") from None
        key = content_key([entry.written, source.content_hash, self.dataset.fingerprint()])
        path = self.run_dir / "networks" / f"{entry.name}-{key[:12]}.ckpt"
        if path.exists():
            try:
                if read_metadata(path).get("made_from") == key:
                    return path
            except PlatoError:
                pass
            print(printable(f"the cached checkpoint {path} is not the network its name says: "
                            "making it again"), file=sys.stderr, flush=True)
        try:
            model, meta = (self._prune(entry, source) if isinstance(entry, PrunedNetwork)
                           else self._distill(entry, source))
        except PlatoError as e:
            raise SpecError(f"spec field '{where}': {e}") from None
        accuracy = evaluate(model, self.dataset, device=self.device)["accuracy"]
        # trained on the sweep's data where distilled or fine-tuned; else as its source was
        data = (data_record(self.dataset) if isinstance(entry, DistilledNetwork) or
                entry.finetune is not None else source.meta.get("data"))
        save_checkpoint(path, model, dataset=self.dataset.name, test_accuracy=accuracy,
                        made_from=key, seed=(meta["recipe"] or {}).get("seed"),
                        **({"data": data} if data else {}), **meta)
        return path

    def _prune(self, entry: PrunedNetwork, source: Checkpoint) -> tuple[nn.Module, dict]:
        from plato.compress import prune_network

        recipe = None if entry.finetune is None else replace(entry.finetune,
                                                              device=str(self.device))
        print(f"pruning{' and fine-tuning' if recipe else ''} network '{entry.name}' from "
              f"'{entry.source}' ({entry.config.method}, amount {entry.config.amount:g})",
              file=sys.stderr, flush=True)
        pruned = prune_network(source.model, entry.config, finetune=recipe,
                               dataset=self.dataset, progress=self.progress)
        record = {**pruned.to_dict(), "source": entry.source,
                  "source_identity": source.content_hash,
                  "source_accuracy": source.test_accuracy}
        # (not fine-tuned: trained as its source was, whose label smoothing a stitch follows)
        return pruned.model, {"pruned": record, "recipe": recipe.to_dict() if recipe
                              else source.meta.get("recipe")}

    def _distill(self, entry: DistilledNetwork, source: Checkpoint) -> tuple[nn.Module, dict]:
        from plato.compress import distill

        recipe = replace(entry.student.recipe, device=str(self.device))
        config = entry.config
        print(f"distilling network '{entry.name}' ({entry.student.model}) from "
              f"'{entry.source}' (temperature {config.temperature:g}, alpha {config.alpha:g})",
              file=sys.stderr, flush=True)
        torch.manual_seed(recipe.seed)  # as plato train builds its network
        student = create_model(entry.student.model, num_classes=self.dataset.num_classes,
                               input_shape=self.dataset.input_shape, **entry.student.options)
        done = distill(student, source.model, self.dataset, config, recipe,
                       progress=self.progress)
        record = {**done.to_dict(), "teacher": entry.source,
                  "teacher_identity": source.content_hash,
                  "student_parameters": _parameters(done.model),
                  "teacher_parameters": _parameters(source.model)}
        return done.model, {"distilled": record, "recipe": recipe.to_dict(),
                            "train_seconds": done.result.seconds}


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_control(name: str, ckpt: Checkpoint, random_seed: int, dataset: Dataset,
                   device: torch.device) -> Network:
    """The network's random-init control: its architecture, freshly initialised from a seed
    recorded in the store (derived from `random_seed` and the network's name)."""
    init_seed = zlib.crc32(f"{random_seed}:{name}".encode())
    torch.manual_seed(init_seed)
    cfg = ckpt.meta["config"]
    model = create_model(ckpt.name, **cfg)
    if ckpt.meta.get("narrowed"):  # channels removed: the fresh init cut to its widths
        narrow_to(model, tensor_shapes(ckpt.model))
    own = ckpt.meta.get("input")  # it poses as the network: fed what the network is fed
    if own:
        feed_recorded_input(model, own, dataset)
    model = model.to(device).eval()
    identity = content_key(["random", ckpt.name, cfg, init_seed, *([own] if own else [])])
    if ckpt.meta.get("narrowed"):  # another architecture than its config's
        identity = content_key([identity, sorted(tensor_shapes(model).items())])
    acc = evaluate(model, dataset, device=device)["accuracy"]
    return Network(name, "random", model, identity, acc, init_seed=init_seed)


def architectures(spec: SweepSpec, dataset: Dataset) -> dict[str, nn.Module]:
    """Each network of the spec built untrained, without training or loading weights: what a
    sweep can plan from (its cut points) before any work. A pruned network is planned as its
    source (the same cut points; channel pruning narrows them only)."""

    def build(name: str) -> nn.Module:
        entry = spec.networks[name]
        if isinstance(entry, PrunedNetwork):
            return build(entry.source)
        if isinstance(entry, ImportedNetwork):
            meta = read_metadata(entry.checkpoint)
            return create_model(meta["model"], **meta["config"])
        trained = entry.student if isinstance(entry, DistilledNetwork) else entry
        return create_model(trained.model, num_classes=dataset.num_classes,
                            input_shape=dataset.input_shape, **trained.options)

    out = {}
    for name, entry in spec.networks.items():
        try:
            out[name] = build(name)
        except PlatoError as e:
            family = getattr(entry, "axis", None)
            raise SpecError(f"spec field 'networks.{family and family.family or name}."
                            f"{entry.kind}': {e}") from None
    return out


def _mismatch(path: Path, model: str, options: dict, recipe: dict, data: Dataset
              ) -> str | None:
    """How a cached checkpoint differs from the network it was cached for (another file put
    in its place, or a damaged one), or None. Recipe fields a checkpoint predates are not
    compared, nor the training data where it predates that record (its file name, which
    holds the data's fingerprint, vouches for it); where it ran (device) never is."""
    try:
        meta = read_metadata(path)
    except PlatoError as e:
        return str(e)
    trained_on = meta.get("data")
    if trained_on and trained_on.get("fingerprint") != data.fingerprint():
        return (f"trained on other data: {trained_on.get('train_examples', 0):,} training "
                f"images of {trained_on.get('name')} (sha256 "
                f"{str(trained_on.get('fingerprint'))[:12]}), not {len(data.train):,} of "
                f"{data.name} ({data.fingerprint()[:12]})")
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


def training_data(entry: TrainedNetwork, dataset: Dataset, whole: Dataset | None) -> Dataset:
    """What a network the spec trains is trained on: the spec's dataset, or with
    `train_subset` all (or N) of the training split before the spec's subset."""
    subset = entry.train_subset
    if subset is None:
        return dataset
    if whole is None:
        raise SpecError(f"spec field 'networks.{entry.name}.train.train_subset': "
                        "needs the whole dataset (prepare_networks(..., whole=))")
    return whole if subset == "all" else whole.subset(train=subset)


def cached_checkpoint(entry: TrainedNetwork, dataset: Dataset, run_dir: Path) -> Path:
    """Where the sweep keeps the network a train entry makes from `dataset` (the file name
    holds a hash of the entry as written and the data): there or not yet."""
    digest = content_key([entry.written, dataset.fingerprint()])[:12]
    return run_dir / "networks" / f"{entry.name}-{digest}.ckpt"


def _trained(entry: TrainedNetwork, dataset: Dataset, run_dir: Path, device: torch.device,
             progress: bool) -> Path:
    """The checkpoint of a network the spec trains: trained on the first run, then reused
    (the file name holds a hash of the train entry and the data)."""
    path = cached_checkpoint(entry, dataset, run_dir)
    recipe = replace(entry.recipe, device=str(device))
    if path.exists():
        mismatch = _mismatch(path, entry.model, entry.options, recipe.to_dict(), dataset)
        if mismatch is None:
            return path
        print(printable(f"the cached checkpoint {path} is not the network its name says "
                        f"({mismatch}): training it again"), file=sys.stderr, flush=True)
    print(f"training network '{entry.name}' ({entry.model})", file=sys.stderr, flush=True)
    try:
        train_and_save(entry.model, dataset, recipe, path, progress=progress, **entry.options)
    except PlatoError as e:
        raise SpecError(f"spec field 'networks.{entry.name}.train': {e}") from None
    return path
