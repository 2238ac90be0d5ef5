"""Sweep specs: a YAML file that describes a whole set of similarity tables.

    name: demo                       # names the run folder and the store's rows
    dataset: digits                  # or {name: imagefolder:PATH, root: DIR, train_subset: N,
                                     #     test_subset: N}
    networks:                        # a name -> a checkpoint, or a model the sweep trains first
      resnet: {checkpoint: runs/resnet.ckpt}
      cnn: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 1}}
                                     # train_subset: all | N in a train entry trains on the
                                     # whole training split (or N of it), not the dataset's
      pruned: {prune: {from: resnet, method: channels, amount: [0.25, 0.5, 0.75],
                       finetune: {epochs: 2, lr: 0.01}}}
                                     # magnitude | magnitude-global | channels; finetune:
                                     # any train recipe field, or absent (no fine-tuning)
      student: {distill: {teacher: resnet, model: cnn-3, width: 8, temperature: 4,
                          alpha: 0.9, epochs: 15, features: [[block2, layer3.0]]}}
                                     # any train field (model options, recipe), hints
                                     # `features` [student point, teacher point] with `beta`
                                     # and `adapter` (a stitch type)
                                     # A list of amounts (or temperatures) is a compression
                                     # axis: one network per level, named NAME-LEVEL
                                     # (pruned-0.25, ...); NAME in pairs and points means
                                     # all of them, and the report plots against the level
    pairs: all                       # all (every ordered pair, self-pairs included), self,
                                     # distinct (ordered, no self-pairs), or [[a, b], ...]
    points: all                      # all, {granularity: layer}, or a list of names/indices,
                                     # or a mapping network -> list
    controls: [trained->trained, random->trained]   # also trained->random, random->random
    seeds: [0]                       # or `repeats: 3` for seeds 0, 1, 2
    random_seed: 0                   # random networks: fresh init from a recorded seed
    stitch: bn-conv1x1-bn
    resize: area
    objective: lstsq+task            # task | match | lstsq | lstsq+task
    recipe: {}                       # how the stitch is fitted: any StitchConfig field but
                                     # objective, seed and device, over the converging default
                                     # (StitchConfig.converging()); with `epochs` and no
                                     # `budget`, over the fixed 3-epoch fields of earlier specs
    measures: [stitch, cka]          # stitch and/or any plato.similarity measure (cka,
                                     # procrustes, cca, svcca, pwcca, linear_cka, ...)
    similarity: {layout: flatten, batch_size: 256, examples: null, collect: 2048,
                 permutations: 0}    # any SimilarityConfig field (permutations: a null)
    diagonal: false                  # true: each sender point into the receiver's point of
                                     # the same name only (a compressed network against its
                                     # original: the same cut points, one cell each)
    keep_stitches: false             # save each stitch (only the stitch) as safetensors
    interpret:                       # what a layer knows (the report's interpretation section)
      invert: {max_steps: 3000}      # reconstruct the input from every point of every network
                                     # (and its random control where a control has one); any
                                     # InvertConfig field, or true for the defaults
      saliency: {images: 64}         # each cell's saliency agreement and deletion area
                                     # (any SaliencyConfig field, or true); part of the cells'
                                     # key: adding it makes new cells
      ood: true                      # the distance from the receiver's distribution, and each
                                     # cell's autoencoder (match) stitch beside it: spec
                                     # NAME-match in the same store, vanilla vs autoencoder

An invalid spec raises SpecError naming the field and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plato.compress import DistillConfig, PruneConfig
from plato.errors import PlatoError, SettingError, SpecError
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.models import model_options
from plato.similarity import MEASURES as SIMILARITY
from plato.similarity import SimilarityConfig
from plato.stitch import OBJECTIVES, StitchConfig
from plato.stitch.layers import RESIZE_MODES
from plato.stitch.registry import resolve_stitch
from plato.sweep.spec_yaml import read_spec_yaml

CONTROLS = ("trained->trained", "random->trained", "trained->random", "random->random")
PAIR_MODES = ("all", "self", "distinct")
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")  # names that name files
# `recipe:` holds how the stitch is fitted; the objective, seeds and device have their own place.
NOT_IN_RECIPE = {"objective": "give it as `objective:`", "seed": "give seeds as `seeds:`",
                 "device": "choose it with `plato sweep --device`"}
# A train entry: these, and the options of its model (plato.models.model_options).
TRAIN_FIELDS = ("model", "epochs", "batch_size", "optimizer", "lr", "schedule", "warmup_epochs",
                "weight_decay", "label_smoothing", "precision", "augment", "seed",
                "train_subset")


@dataclass
class NetworkSpec:
    name: str
    checkpoint: Path | None = None
    train: dict[str, Any] | None = None
    prune: dict[str, Any] | None = None  # from, method, amount (one level), finetune
    distill: dict[str, Any] | None = None  # teacher, train fields, DistillConfig fields
    family: str | None = None  # the spec entry whose compression axis made this network
    axis: str | None = None  # amount | temperature
    level: float | None = None

    @property
    def source(self) -> str | None:
        """The network this one is made from (pruned from, or distilled from)."""
        if self.prune is not None:
            return self.prune["from"]
        return self.distill["teacher"] if self.distill is not None else None

    def compression(self) -> dict | None:
        """What the spec says this network is, for the store and the report."""
        if self.prune is None and self.distill is None:
            return None
        kind = "prune" if self.prune is not None else "distill"
        settings = self.prune if self.prune is not None else self.distill
        return {"kind": kind, "source": self.source, "family": self.family or self.name,
                "axis": self.axis, "level": self.level,
                **{k: v for k, v in settings.items() if k not in ("from", "teacher")}}


@dataclass
class DatasetSpec:
    name: str = "digits"
    root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None


@dataclass
class InterpretSpec:
    """The interpretation a spec asks for (none by default)."""

    invert: InvertConfig | None = None
    saliency: SaliencyConfig | None = None
    ood: bool = False

    @property
    def asked(self) -> bool:
        return self.invert is not None or self.saliency is not None or self.ood


@dataclass
class SweepSpec:
    name: str
    dataset: DatasetSpec
    networks: dict[str, NetworkSpec]
    pairs: list[tuple[str, str]]
    points: dict[str, Any]  # network -> "all" | list of names/indices
    granularity: str = "block"
    controls: list[str] = field(default_factory=lambda: ["trained->trained"])
    seeds: list[int] = field(default_factory=lambda: [0])
    random_seed: int = 0
    stitch: str = "bn-conv1x1-bn"
    resize: str = "area"
    stitch_config: StitchConfig = field(default_factory=StitchConfig)  # objective + recipe
    measures: list[str] = field(default_factory=lambda: ["stitch"])
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    keep_stitches: bool = False
    diagonal: bool = False  # only cells between points of the same name
    interpret: InterpretSpec = field(default_factory=InterpretSpec)
    source: str = ""  # the YAML text, kept in the store and the report
    base_dir: Path = Path(".")


def _fail(field_name: str, message: str) -> SpecError:
    return SpecError(f"spec field '{field_name}': {message}")


def _expect(value, kinds, field_name: str, what: str):
    if not isinstance(value, kinds):
        raise _fail(field_name, f"expected {what}, got {value!r}")
    return value


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    text = path.read_text()
    raw = read_spec_yaml(text, str(path))
    return parse_spec(raw, source=text, base_dir=path.parent, default_name=path.stem)


def parse_spec(raw: Any, source: str = "", base_dir: Path = Path("."),
               default_name: str = "sweep") -> SweepSpec:
    raw = _expect(raw, dict, "<top level>", "a mapping of fields")
    known = {"name", "dataset", "networks", "pairs", "points", "controls", "seeds", "repeats",
             "random_seed", "stitch", "resize", "objective", "recipe", "measures",
             "similarity", "keep_stitches", "interpret", "diagonal"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(unknown[0], f"unknown field; the fields are {', '.join(sorted(known))}")

    name = _safe_name(str(raw.get("name", default_name)), "name")
    dataset = _dataset(raw.get("dataset", "digits"), base_dir)
    networks = _networks(raw.get("networks"), base_dir)
    families = _families(networks)
    pairs = _pairs(raw.get("pairs", "all"), list(networks), families)
    points, granularity = _points(raw.get("points", "all"), list(networks), families)

    controls = raw.get("controls", ["trained->trained"])
    controls = [controls] if isinstance(controls, str) else controls
    _expect(controls, list, "controls", f"a list of {', '.join(CONTROLS)}")
    for c in controls:
        if c not in CONTROLS:
            raise _fail("controls", f"'{c}' is not one of {', '.join(CONTROLS)}")

    if "seeds" in raw and "repeats" in raw:
        raise _fail("seeds", "give seeds or repeats, not both")
    if "repeats" in raw:
        repeats = _expect(raw["repeats"], int, "repeats", "a positive integer")
        if repeats < 1:
            raise _fail("repeats", "must be at least 1")
        seeds = list(range(repeats))
    else:
        seeds = raw.get("seeds", [0])
        seeds = [seeds] if isinstance(seeds, int) else seeds
        _expect(seeds, list, "seeds", "a list of integers")
        if not seeds or not all(isinstance(s, int) for s in seeds):
            raise _fail("seeds", f"expected a non-empty list of integers, got {seeds!r}")

    stitch = str(raw.get("stitch", "bn-conv1x1-bn"))
    _check_stitch_type(stitch)
    resize = raw.get("resize", "area")
    if resize not in RESIZE_MODES:
        raise _fail("resize", f"'{resize}' is not one of {', '.join(RESIZE_MODES)}")
    stitch_config = _stitch_config(raw.get("objective"), raw.get("recipe") or {})
    measures = raw.get("measures", ["stitch"])
    measures = [measures] if isinstance(measures, str) else measures
    allowed = ("stitch", *SIMILARITY)
    for m in _expect(measures, list, "measures", "a list"):
        if m not in allowed:
            raise _fail("measures", f"'{m}' is not one of {', '.join(allowed)}")
    if not measures:
        raise _fail("measures", "name at least one measure")
    similarity = _similarity(raw.get("similarity", {}))
    return SweepSpec(
        name=name, dataset=dataset, networks=networks, pairs=pairs, points=points,
        granularity=granularity, controls=list(controls), seeds=list(seeds),
        random_seed=int(_expect(raw.get("random_seed", 0), int, "random_seed", "an integer")),
        stitch=stitch, resize=resize, stitch_config=stitch_config,
        measures=list(measures), similarity=similarity,
        keep_stitches=bool(raw.get("keep_stitches", False)),
        diagonal=_expect(raw.get("diagonal", False), bool, "diagonal", "true or false"),
        interpret=_interpret(raw.get("interpret") or {}),
        source=source, base_dir=base_dir,
    )


def _stitch_config(objective, recipe) -> StitchConfig:
    """The recipe over the default it means (StitchConfig.from_user): converging, or with
    `epochs` and no `budget` the fixed-epoch settings of the specs written before it."""
    if objective is not None and objective not in OBJECTIVES:
        raise _fail("objective", f"'{objective}' is not one of {', '.join(OBJECTIVES)}")
    _expect(recipe, dict, "recipe", "a mapping of stitch-fitting settings")
    for key, where in NOT_IN_RECIPE.items():
        if key in recipe:
            raise _fail(f"recipe.{key}", f"not a recipe setting: {where}")
    try:
        given = {**({"objective": objective} if objective else {}), **recipe}
        return StitchConfig.from_user(given)
    except SettingError as e:
        raise _fail("objective" if e.setting == "objective" else f"recipe.{e.setting}",
                    str(e)) from None


def _similarity(value) -> SimilarityConfig:
    names = list(SimilarityConfig.__dataclass_fields__)
    _expect(value, dict, "similarity", f"a mapping with any of {', '.join(names)}")
    for key in value:
        if key not in names:
            raise _fail(f"similarity.{key}", f"unknown setting; allowed: {', '.join(names)}")
    try:
        return SimilarityConfig(**value)
    except SettingError as e:
        raise _fail(f"similarity.{e.setting}", str(e)) from None


def _interpret(value) -> InterpretSpec:
    _expect(value, dict, "interpret", "a mapping with any of invert, saliency, ood")
    for key in value:
        if key not in ("invert", "saliency", "ood"):
            raise _fail(f"interpret.{key}", "unknown; allowed: invert, saliency, ood")
    configs = {}
    for key, kind in (("invert", InvertConfig), ("saliency", SaliencyConfig)):
        given = value.get(key)
        if given is None or given is False:
            continue
        given = {} if given is True else _expect(given, dict, f"interpret.{key}",
                                                 "true or a mapping of settings")
        try:
            configs[key] = kind.from_user(given)
        except SettingError as e:
            raise _fail(f"interpret.{key}.{e.setting}", str(e)) from None
    ood = _expect(value.get("ood", False), bool, "interpret.ood", "true or false")
    return InterpretSpec(configs.get("invert"), configs.get("saliency"), ood)


def _check_stitch_type(kind: str) -> None:
    try:  # the stitch registry is the one judge of what a type name means
        resolve_stitch(kind)
    except PlatoError as e:
        raise _fail("stitch", str(e)) from None


def _dataset(value, base_dir: Path) -> DatasetSpec:
    if isinstance(value, str):
        value = {"name": value}
    value = _expect(value, dict, "dataset", "a name or a mapping with name, root, "
                    "train_subset, test_subset")
    allowed = {"name", "root", "train_subset", "test_subset"}
    for key in value:
        if key not in allowed:
            raise _fail(f"dataset.{key}", f"unknown; allowed: {', '.join(sorted(allowed))}")
    if "name" not in value:
        raise _fail("dataset.name", "missing")
    for key in ("train_subset", "test_subset"):
        if key in value and (not isinstance(value[key], int) or value[key] < 1):
            raise _fail(f"dataset.{key}", "expected a positive integer")
    name = str(value["name"])
    if name.startswith("imagefolder:"):  # a relative path is relative to the spec's folder
        path = Path(name.split(":", 1)[1]).expanduser()
        value["name"] = f"imagefolder:{path if path.is_absolute() else base_dir / path}"
    return DatasetSpec(**value)


def _safe_name(name: str, field_name: str) -> str:
    """A name that becomes part of a file name (the run folder, a network's checkpoint):
    letters, digits, '.', '_', '+', '-', not starting with '.', at most 100 characters."""
    if not SAFE_NAME.fullmatch(name):
        raise _fail(field_name, f"the name '{name[:120]}' cannot name a file: use letters, "
                                "digits, '_', and after the first character '.', '+' and "
                                "'-'; at most 100 characters")
    return name


def _networks(value, base_dir: Path) -> dict[str, NetworkSpec]:
    if not value:
        raise _fail("networks", "missing: name at least one network (checkpoint or train)")
    _expect(value, dict, "networks", "a mapping of name -> {checkpoint: PATH}, {train: {...}}, "
            "{prune: {...}} or {distill: {...}}")
    out: dict[str, NetworkSpec] = {}
    for name, entry in value.items():
        name, where = str(name), f"networks.{name}"
        _safe_name(name, where)
        _expect(entry, dict, where, "{checkpoint: PATH}, {train: {model: ..., ...}}, "
                "{prune: {from: ..., ...}} or {distill: {teacher: ..., ...}}")
        if len(entry) != 1 or next(iter(entry)) not in ("checkpoint", "train", "prune",
                                                        "distill"):
            raise _fail(where, "give exactly one of checkpoint, train, prune or distill")
        kind = next(iter(entry))
        if kind == "checkpoint":
            path = Path(str(entry["checkpoint"])).expanduser()
            made = [NetworkSpec(name, checkpoint=path if path.is_absolute() else base_dir / path)]
        elif kind == "train":
            made = [NetworkSpec(name, train=_train_entry(entry["train"], f"{where}.train"))]
        elif kind == "prune":
            made = _prune_entries(name, entry["prune"], f"{where}.prune")
        else:
            made = _distill_entries(name, entry["distill"], f"{where}.distill")
        for net in made:
            if net.name in out:
                raise _fail(where, f"makes a network named '{net.name}', which is already one")
            out[net.name] = net
    for net in out.values():
        _check_source(net, out)
    return out


def _train_entry(train, where: str, allowed: tuple[str, ...] = TRAIN_FIELDS,
                 extra: tuple[str, ...] = ()) -> dict:
    """A train entry's fields checked: a model, its options, recipe fields (`extra`: the
    other fields the entry may hold)."""
    train = _expect(train, dict, where, "a mapping")
    if "model" not in train:
        raise _fail(f"{where}.model", "missing: which model to train")
    try:
        options = model_options(str(train["model"]))
    except PlatoError as e:
        raise _fail(f"{where}.model", str(e)) from None
    for key in train:
        if key not in allowed and key not in options and key not in extra:
            raise _fail(f"{where}.{key}",
                        f"unknown; allowed: {', '.join((*allowed, *extra))}, and the "
                        f"model's options {', '.join(options) or '(none)'}")
    subset = train.get("train_subset")
    if subset is not None and subset != "all" and not (
            isinstance(subset, int) and not isinstance(subset, bool) and subset > 0):
        raise _fail(f"{where}.train_subset",
                    f"'{subset}' is not 'all' or a positive number of images")
    return dict(train)


RECIPE_FIELDS = tuple(f for f in TRAIN_FIELDS if f not in ("model", "train_subset"))


def _recipe_fields(value, where: str) -> dict:
    """A fine-tuning recipe: train recipe fields only, checked by building the Recipe."""
    from plato.train import Recipe

    value = _expect(value, dict, where, f"a mapping with any of {', '.join(RECIPE_FIELDS)}")
    for key in value:
        if key not in RECIPE_FIELDS:
            raise _fail(f"{where}.{key}", f"unknown; allowed: {', '.join(RECIPE_FIELDS)}")
    try:
        Recipe(**value)
    except (PlatoError, TypeError) as e:
        raise _fail(where, str(e)) from None
    return dict(value)


def _levels(value, field_name: str) -> tuple[list, bool]:
    """A setting's value, or its list of levels (a compression axis)."""
    if isinstance(value, list):
        if not value or len(set(map(str, value))) != len(value):
            raise _fail(field_name, f"a list of levels must be non-empty and without repeats, "
                        f"got {value!r}")
        return value, True
    return [value], False


def _level_name(name: str, level) -> str:
    return _safe_name(f"{name}-{level:g}" if isinstance(level, int | float) else
                      f"{name}-{level}", name)


def _prune_entries(name: str, value, where: str) -> list[NetworkSpec]:
    value = _expect(value, dict, where, "a mapping with from, method, amount, finetune")
    allowed = ("from", "method", "amount", "finetune")
    for key in value:
        if key not in allowed:
            raise _fail(f"{where}.{key}", f"unknown; allowed: {', '.join(allowed)}")
    for key in ("from", "amount"):
        if key not in value:
            raise _fail(f"{where}.{key}", "missing: " + {
                "from": "the network to prune", "amount": "the fraction to prune, in [0, 1), "
                "or a list of them"}[key])
    finetune = value.get("finetune")
    finetune = None if finetune is None else _recipe_fields(finetune, f"{where}.finetune")
    amounts, axis = _levels(value["amount"], f"{where}.amount")
    made = []
    for amount in amounts:
        try:
            config = PruneConfig(method=value.get("method", "magnitude"), amount=amount)
        except SettingError as e:
            raise _fail(f"{where}.{e.setting}", str(e)) from None
        made.append(NetworkSpec(
            _level_name(name, amount) if axis else name,
            prune={"from": str(value["from"]), "method": config.method,
                   "amount": config.amount, "finetune": finetune},
            family=name if axis else None, axis="amount" if axis else None,
            level=amount if axis else None))
    return made


DISTILL_FIELDS = ("teacher", "temperature", "alpha", "features", "beta", "adapter")


def _distill_entries(name: str, value, where: str) -> list[NetworkSpec]:
    value = _expect(value, dict, where, "a mapping with teacher, model, temperature, alpha, "
                    "train fields")
    if "teacher" not in value:
        raise _fail(f"{where}.teacher", "missing: the network to distil from")
    train = _train_entry(value, where, tuple(f for f in TRAIN_FIELDS if f != "train_subset"),
                         DISTILL_FIELDS)
    temperatures, axis = _levels(value.get("temperature", DistillConfig.temperature),
                                 f"{where}.temperature")
    made = []
    for t in temperatures:
        settings = {k: train[k] for k in DISTILL_FIELDS if k in train and k != "teacher"}
        try:
            config = DistillConfig(**{**settings, "temperature": t})
        except SettingError as e:
            raise _fail(f"{where}.{e.setting}", str(e)) from None
        entry = {**{k: v for k, v in train.items() if k not in DISTILL_FIELDS},
                 **config.to_dict(), "teacher": str(value["teacher"])}
        made.append(NetworkSpec(_level_name(name, t) if axis else name, distill=entry,
                                family=name if axis else None,
                                axis="temperature" if axis else None,
                                level=t if axis else None))
    return made


def _check_source(net: NetworkSpec, networks: dict[str, NetworkSpec]) -> None:
    """A compressed network's source is another network of the spec, and no chain of
    sources comes back to it."""
    seen, current = {net.name}, net
    while current.source is not None:
        field_name = (f"networks.{net.family or net.name}."
                      f"{'prune.from' if current.prune else 'distill.teacher'}")
        if current.source not in networks:
            raise _fail(field_name, f"'{current.source}' is not a network of the spec; "
                        f"networks: {', '.join(networks)}")
        if current.source in seen:
            raise _fail(field_name, f"'{current.source}' is made from '{net.name}' itself")
        seen.add(current.source)
        current = networks[current.source]


def _families(networks: dict[str, NetworkSpec]) -> dict[str, list[str]]:
    """Each compression axis's entry name -> its networks, level by level."""
    families: dict[str, list[str]] = {}
    for net in networks.values():
        if net.family is not None:
            families.setdefault(net.family, []).append(net.name)
    return families


def _pairs(value, names: list[str], families: dict[str, list[str]] | None = None
           ) -> list[tuple[str, str]]:
    """`families`: a compression axis's name in a pair stands for each of its networks."""
    families = families or {}
    if value == "all":
        return [(a, b) for a in names for b in names]
    if value == "self":
        return [(a, a) for a in names]
    if value == "distinct":
        return [(a, b) for a in names for b in names if a != b]
    if isinstance(value, list):
        pairs = []
        for item in value:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                raise _fail("pairs", f"each pair is [sender, receiver], got {item!r}")
            for n in item:
                if n not in names and n not in families:
                    raise _fail("pairs", f"'{n}' is not a network; networks: {', '.join(names)}")
            senders, receivers = (families.get(str(n), [str(n)]) for n in item)
            pairs += [(a, b) for a in senders for b in receivers if (a, b) not in pairs]
        return pairs
    raise _fail("pairs", f"expected {', '.join(PAIR_MODES)} or a list of [sender, receiver], "
                f"got {value!r}")


def _points(value, names: list[str], families: dict[str, list[str]] | None = None
            ) -> tuple[dict[str, Any], str]:
    families = families or {}
    granularity = "block"
    if isinstance(value, dict) and set(value) <= {"granularity"}:
        granularity = value.get("granularity", "block")
        if granularity not in ("block", "layer"):
            raise _fail("points.granularity", f"'{granularity}' is not block or layer")
        return {n: "all" for n in names}, granularity
    if value == "all":
        return {n: "all" for n in names}, granularity
    if isinstance(value, list):
        return {n: list(value) for n in names}, granularity
    if isinstance(value, dict):
        out = {}
        family_of = {m: f for f, members in families.items() for m in members}
        for n in names:
            chosen = value.get(n, value.get(family_of.get(n), "all"))
            if chosen != "all" and not isinstance(chosen, list):
                raise _fail(f"points.{n}", f"expected all or a list, got {chosen!r}")
            out[n] = chosen
        for n in value:
            if n not in names and n not in families:
                raise _fail(f"points.{n}", f"'{n}' is not a network")
        return out, granularity
    raise _fail("points", f"expected all, {{granularity: block|layer}}, a list, or a mapping "
                f"network -> list; got {value!r}")
