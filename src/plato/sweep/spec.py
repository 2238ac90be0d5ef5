"""Sweep specs: a YAML file that describes a whole set of similarity tables.

    name: demo                       # names the run folder and the store's rows
    dataset: digits                  # or {name: imagefolder:PATH, root: DIR, train_subset: N,
                                     #     test_subset: N}
    networks:                        # a name -> a checkpoint, or a model the sweep trains first
      resnet: {checkpoint: runs/resnet.ckpt}
      cnn: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 1}}
                                     # train_subset: all | N in a train entry trains on the
                                     # whole training split (or N of it), not the dataset's
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

from plato.errors import PlatoError, SettingError, SpecError
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.models import model_options
from plato.similarity import MEASURES as SIMILARITY
from plato.similarity import SimilarityConfig
from plato.stitch import OBJECTIVES, Stitch, StitchConfig
from plato.stitch.layers import RESIZE_MODES
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
             "similarity", "keep_stitches", "interpret"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(unknown[0], f"unknown field; the fields are {', '.join(sorted(known))}")

    name = _safe_name(str(raw.get("name", default_name)), "name")
    dataset = _dataset(raw.get("dataset", "digits"), base_dir)
    networks = _networks(raw.get("networks"), base_dir)
    pairs = _pairs(raw.get("pairs", "all"), list(networks))
    points, granularity = _points(raw.get("points", "all"), list(networks))

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
        Stitch(kind, (4, 4, 4), (4, 4, 4))
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
    _expect(value, dict, "networks", "a mapping of name -> {checkpoint: PATH} or {train: {...}}")
    out = {}
    for name, entry in value.items():
        where = f"networks.{name}"
        _safe_name(str(name), where)
        _expect(entry, dict, where, "{checkpoint: PATH} or {train: {model: ..., ...}}")
        if set(entry) == {"checkpoint"}:
            path = Path(str(entry["checkpoint"])).expanduser()
            out[str(name)] = NetworkSpec(str(name), checkpoint=path if path.is_absolute()
                                         else base_dir / path)
        elif set(entry) == {"train"}:
            train = _expect(entry["train"], dict, f"{where}.train", "a mapping")
            if "model" not in train:
                raise _fail(f"{where}.train.model", "missing: which model to train")
            try:
                options = model_options(str(train["model"]))
            except PlatoError as e:
                raise _fail(f"{where}.train.model", str(e)) from None
            for key in train:
                if key not in TRAIN_FIELDS and key not in options:
                    raise _fail(f"{where}.train.{key}",
                                f"unknown; allowed: {', '.join(TRAIN_FIELDS)}, and the "
                                f"model's options {', '.join(options) or '(none)'}")
            subset = train.get("train_subset")
            if subset is not None and subset != "all" and not (
                    isinstance(subset, int) and not isinstance(subset, bool) and subset > 0):
                raise _fail(f"{where}.train.train_subset",
                            f"'{subset}' is not 'all' or a positive number of images")
            out[str(name)] = NetworkSpec(str(name), train=dict(train))
        else:
            raise _fail(where, "give exactly one of checkpoint or train")
    return out


def _pairs(value, names: list[str]) -> list[tuple[str, str]]:
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
                if n not in names:
                    raise _fail("pairs", f"'{n}' is not a network; networks: {', '.join(names)}")
            pairs.append((str(item[0]), str(item[1])))
        return pairs
    raise _fail("pairs", f"expected {', '.join(PAIR_MODES)} or a list of [sender, receiver], "
                f"got {value!r}")


def _points(value, names: list[str]) -> tuple[dict[str, Any], str]:
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
        for n in names:
            chosen = value.get(n, "all")
            if chosen != "all" and not isinstance(chosen, list):
                raise _fail(f"points.{n}", f"expected all or a list, got {chosen!r}")
            out[n] = chosen
        for n in value:
            if n not in names:
                raise _fail(f"points.{n}", f"'{n}' is not a network")
        return out, granularity
    raise _fail("points", f"expected all, {{granularity: block|layer}}, a list, or a mapping "
                f"network -> list; got {value!r}")
