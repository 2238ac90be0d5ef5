"""The networks of a sweep spec: one typed class per kind of entry, parsed and checked once,
every error naming the entry's field by its path in the spec.

    ImportedNetwork   {checkpoint: PATH}: a checkpoint (trained by Plato or imported)
    TrainedNetwork    {train: {model, <its options>, <Recipe fields>, train_subset}}
    PrunedNetwork     {prune: {from, method, amount, finetune: {<Recipe fields>}}}
    DistilledNetwork  {distill: {teacher, model, <its options>, <Recipe fields>,
                                 <DistillConfig fields>}}

A list of amounts (or temperatures) is a compression axis: the entry is one network per level,
named NAME-LEVEL, its `family` the entry's name. Each setting is typed by the dataclass it
configures (Recipe, PruneConfig, DistillConfig: plato.settings.typed); a model's options are
its own (plato.models.model_options). `written` is an entry as the spec wrote it: what names
the network's cached checkpoint and the spec's identity in a store, unchanged since specs were
dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plato.compress import DistillConfig, PruneConfig
from plato.errors import PlatoError, SettingError, SpecError
from plato.models import check_option_types, model_options
from plato.models.external import is_external, options_of
from plato.settings import typed
from plato.train import Recipe

SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")  # names that name files
RECIPE_FIELDS = tuple(f for f in Recipe.__dataclass_fields__ if f != "device")
DISTILL_FIELDS = ("teacher", *DistillConfig.__dataclass_fields__)
KINDS = ("checkpoint", "train", "prune", "distill")


def fail(path: str, message: str) -> SpecError:
    return SpecError(f"spec field '{path}': {message}")


def expect(value, kinds, path: str, what: str):
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,))):
        raise fail(path, f"expected {what}, got {value!r}")
    return value


def safe_name(name: str, path: str) -> str:
    """A name that becomes part of a file name (the run folder, a network's checkpoint):
    letters, digits, '.', '_', '+', '-', not starting with '.', at most 100 characters."""
    if not SAFE_NAME.fullmatch(name):
        raise fail(path, f"the name '{name[:120]}' cannot name a file: use letters, digits, "
                         "'_', and after the first character '.', '+' and '-'; at most 100 "
                         "characters")
    return name


@dataclass(frozen=True)
class Compression:
    """Where a pruned or distilled network sits on its entry's compression axis."""

    family: str | None = None  # the entry whose axis made this network (None: no axis)
    axis: str | None = None  # amount | temperature
    level: float | None = None


@dataclass(frozen=True)
class ImportedNetwork:
    name: str
    checkpoint: Path
    kind = "checkpoint"
    source = None  # made from no other network of the spec


@dataclass(frozen=True)
class TrainedNetwork:
    name: str
    model: str
    options: dict[str, Any]  # the model's own options (width, batchnorm, ...)
    recipe: Recipe  # how it is trained (the device: where the sweep runs)
    train_subset: str | int | None  # all | N: trained on all (N) of the training split
    written: dict[str, Any] = field(repr=False)  # as the spec wrote it
    kind = "train"
    source = None


@dataclass(frozen=True)
class PrunedNetwork:
    name: str
    source: str  # the network it is pruned from
    config: PruneConfig
    finetune: Recipe | None  # None: no fine-tuning
    finetune_written: dict[str, Any] | None = field(repr=False)
    axis: Compression = Compression()
    kind = "prune"

    @property
    def written(self) -> dict[str, Any]:
        return {"from": self.source, "method": self.config.method, "amount": self.config.amount,
                "finetune": self.finetune_written}


@dataclass(frozen=True)
class DistilledNetwork:
    name: str
    source: str  # the teacher
    student: TrainedNetwork  # the student's model, options and recipe
    config: DistillConfig
    axis: Compression = Compression()
    kind = "distill"

    @property
    def written(self) -> dict[str, Any]:
        return {**self.student.written, **self.config.to_dict(), "teacher": self.source}


NetworkEntry = ImportedNetwork | TrainedNetwork | PrunedNetwork | DistilledNetwork


def compression_of(entry: NetworkEntry) -> dict | None:
    """What the spec says a compressed network is, for the store and the report."""
    if not isinstance(entry, PrunedNetwork | DistilledNetwork):
        return None
    settings = {k: v for k, v in entry.written.items() if k not in ("from", "teacher")}
    return {"kind": entry.kind, "source": entry.source,
            "family": entry.axis.family or entry.name, "axis": entry.axis.axis,
            "level": entry.axis.level, **settings}


def parse_networks(value, base_dir: Path) -> dict[str, NetworkEntry]:
    """The spec's `networks` mapping, every entry checked, compression axes expanded."""
    if not value:
        raise fail("networks", "missing: name at least one network (checkpoint or train)")
    expect(value, dict, "networks", "a mapping of name -> {checkpoint: PATH}, {train: {...}}, "
           "{prune: {...}} or {distill: {...}}")
    out: dict[str, NetworkEntry] = {}
    for name, entry in value.items():
        name, path = str(name), f"networks.{name}"
        safe_name(name, path)
        expect(entry, dict, path, "{checkpoint: PATH}, {train: {model: ..., ...}}, "
               "{prune: {from: ..., ...}} or {distill: {teacher: ..., ...}}")
        if len(entry) != 1 or next(iter(entry)) not in KINDS:
            raise fail(path, "give exactly one of checkpoint, train, prune or distill")
        kind, fields = next(iter(entry.items()))
        if kind == "checkpoint":
            file = Path(str(fields)).expanduser()
            made = [ImportedNetwork(name, file if file.is_absolute() else base_dir / file)]
        elif kind == "train":
            made = [trained(name, fields, f"{path}.train")]
        elif kind == "prune":
            made = pruned(name, fields, f"{path}.prune")
        else:
            made = distilled(name, fields, f"{path}.distill")
        for net in made:
            if net.name in out:
                raise fail(path, f"makes a network named '{net.name}', which is already one")
            out[net.name] = net
    for net in out.values():
        _check_source(net, out)
    return out


def trained(name: str, fields, path: str, extra: tuple[str, ...] = (),
            subset: bool = True) -> TrainedNetwork:
    """A train entry: a model, its options and Recipe fields (`extra`: other fields the
    mapping may hold, left for the caller; `subset`: train_subset allowed)."""
    fields = expect(fields, dict, path, "a mapping")
    if "model" not in fields:
        raise fail(f"{path}.model", "missing: which model to train")
    model = expect(fields["model"], str, f"{path}.model", "a model name")
    try:
        options = model_options(model)
        any_other = is_external(model) and options_of(model)[1]  # timm, torchvision: **kwargs
    except PlatoError as e:
        raise fail(f"{path}.model", str(e)) from None
    allowed = ("model", *RECIPE_FIELDS, *(("train_subset",) if subset else ()))
    if any_other:  # every other field is the model's (its constructor checks them when built)
        options = [k for k in fields if k not in allowed and k not in extra]
    for key in fields:
        if key not in allowed and key not in options and key not in extra:
            raise fail(f"{path}.{key}", f"unknown; allowed: {', '.join((*allowed, *extra))}, "
                       f"and the model's options {', '.join(options) or '(none)'}")
    train_subset = fields.get("train_subset")
    if train_subset is not None and train_subset != "all" and not (
            isinstance(train_subset, int) and not isinstance(train_subset, bool)
            and train_subset > 0):
        raise fail(f"{path}.train_subset",
                   f"'{train_subset}' is not 'all' or a positive number of images")
    recipe = _recipe({k: v for k, v in fields.items() if k in RECIPE_FIELDS}, path)
    model_fields = {k: v for k, v in fields.items() if k in options}
    try:
        check_option_types(model, model_fields)
    except SettingError as e:
        raise fail(f"{path}.{e.setting}", str(e)) from None
    return TrainedNetwork(name, model, model_fields,
                          recipe, train_subset, {k: v for k, v in fields.items()
                                                 if k not in extra})


def _recipe(fields: dict, path: str) -> Recipe:
    try:
        return typed(Recipe, fields, "recipe")
    except SettingError as e:
        raise fail(f"{path}.{e.setting}", str(e)) from None
    except PlatoError as e:  # a range the Recipe checks
        raise fail(path, str(e)) from None


def _levels(value, path: str) -> tuple[list, bool]:
    """A setting's value, or its list of levels (a compression axis)."""
    if isinstance(value, list):
        if not value or len(set(map(str, value))) != len(value):
            raise fail(path, f"a list of levels must be non-empty and without repeats, got "
                             f"{value!r}")
        return value, True
    return [value], False


def _level_name(name: str, level) -> str:
    return safe_name(f"{name}-{level:g}" if isinstance(level, int | float) else
                     f"{name}-{level}", name)


def pruned(name: str, fields, path: str) -> list[PrunedNetwork]:
    fields = expect(fields, dict, path, "a mapping with from, method, amount, finetune")
    allowed = ("from", "method", "amount", "finetune")
    for key in fields:
        if key not in allowed:
            raise fail(f"{path}.{key}", f"unknown; allowed: {', '.join(allowed)}")
    for key, what in (("from", "the network to prune"),
                      ("amount", "the fraction to prune, in [0, 1), or a list of them")):
        if key not in fields:
            raise fail(f"{path}.{key}", f"missing: {what}")
    finetune = fields.get("finetune")
    recipe = None
    if finetune is not None:
        finetune = expect(finetune, dict, f"{path}.finetune",
                          f"a mapping with any of {', '.join(RECIPE_FIELDS)}")
        for key in finetune:
            if key not in RECIPE_FIELDS:
                raise fail(f"{path}.finetune.{key}",
                           f"unknown; allowed: {', '.join(RECIPE_FIELDS)}")
        recipe = _recipe(finetune, f"{path}.finetune")
        finetune = dict(finetune)
    amounts, axis = _levels(fields["amount"], f"{path}.amount")
    made = []
    for amount in amounts:
        try:
            config = typed(PruneConfig, {"method": fields.get("method", "magnitude"),
                                         "amount": amount}, "prune")
        except SettingError as e:
            raise fail(f"{path}.{e.setting}", str(e)) from None
        made.append(PrunedNetwork(
            _level_name(name, amount) if axis else name, str(fields["from"]), config, recipe,
            finetune, Compression(name, "amount", amount) if axis else Compression()))
    return made


def distilled(name: str, fields, path: str) -> list[DistilledNetwork]:
    fields = expect(fields, dict, path, "a mapping with teacher, model, temperature, alpha, "
                    "train fields")
    if "teacher" not in fields:
        raise fail(f"{path}.teacher", "missing: the network to distil from")
    student = trained(name, fields, path, DISTILL_FIELDS, subset=False)
    temperatures, axis = _levels(fields.get("temperature", DistillConfig.temperature),
                                 f"{path}.temperature")
    made = []
    for t in temperatures:
        settings = {k: fields[k] for k in DISTILL_FIELDS
                    if k in fields and k not in ("teacher", "temperature")}
        try:
            config = typed(DistillConfig, {**settings, "temperature": t}, "distill")
        except SettingError as e:
            raise fail(f"{path}.{e.setting}", str(e)) from None
        made.append(DistilledNetwork(
            _level_name(name, t) if axis else name, str(fields["teacher"]), student, config,
            Compression(name, "temperature", t) if axis else Compression()))
    return made


def _check_source(net: NetworkEntry, networks: dict[str, NetworkEntry]) -> None:
    """A compressed network's source is another network of the spec, and no chain of
    sources comes back to it."""
    seen, current = {net.name}, net
    while current.source is not None:
        family = getattr(net, "axis", Compression()).family or net.name
        field_name = "prune.from" if current.kind == "prune" else "distill.teacher"
        path = f"networks.{family}.{field_name}"
        if current.source not in networks:
            raise fail(path, f"'{current.source}' is not a network of the spec; networks: "
                             f"{', '.join(networks)}")
        if current.source in seen:
            raise fail(path, f"'{current.source}' is made from '{net.name}' itself")
        seen.add(current.source)
        current = networks[current.source]
