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
    objective: lstsq+task            # task | match | lstsq | lstsq+task | translate |
                                     # final | final+task (plato.stitch.fit)
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

A spec is parsed and checked once (parse_spec): its fields' types by a pydantic model of the
file (`SpecFields`), each network entry into its typed class (plato.sweep.entries), each
settings mapping by its config dataclass; an invalid spec raises SpecError naming the field by
its path and what is allowed. The sweep passes the typed `SweepSpec` on, never the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StrictInt, ValidationError

from plato.errors import PlatoError, SettingError, SpecError
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.settings import STRICT, problem, where
from plato.similarity import MEASURES as SIMILARITY
from plato.similarity import SimilarityConfig
from plato.stitch import OBJECTIVES, StitchConfig
from plato.stitch.layers import RESIZE_MODES
from plato.stitch.registry import DEFAULT_STITCH, resolve_stitch
from plato.sweep.entries import NetworkEntry, expect, fail, parse_networks, safe_name
from plato.sweep.spec_yaml import read_spec_file, read_spec_yaml

CONTROLS = ("trained->trained", "random->trained", "trained->random", "random->random")
PAIR_MODES = ("all", "self", "distinct")
# `recipe:` holds how the stitch is fitted; the objective, seeds and device have their own place.
NOT_IN_RECIPE = {"objective": "give it as `objective:`", "seed": "give seeds as `seeds:`",
                 "device": "choose it with `plato sweep --device`"}


def _listed(value):
    """One value where a list may stand: as that list."""
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


# A seed seeds torch's generators, which take 0 .. 2^63 - 1 here (a larger one overflows only
# after a cell is computed); repeats are seeds 0 .. N-1, bounded before any list is made.
Seed = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
MAX_REPEATS = 1_000_000  # seeds: more is never a study, and the list stays small
MAX_PAIRS = 100_000  # pairs of networks (a 16-network study has 256; all pairs of 316 is this)


class SpecFields(BaseModel):
    """A spec file's fields as written, each of its type (what they mean: parse_spec)."""

    model_config = STRICT
    name: str | int | float | None = None  # default: the file's name
    dataset: str | dict = Field("digits", description="a name or a mapping with name, root, "
                                "train_subset, test_subset")
    networks: dict | None = Field(None, description="a mapping of name -> {checkpoint: PATH},"
                                  " {train: {...}}, {prune: {...}} or {distill: {...}}")
    pairs: str | list = Field("all", description=f"{', '.join(PAIR_MODES)} or a list of "
                              "[sender, receiver]")
    points: str | list | dict = Field("all", description="all, {granularity: block|layer}, "
                                      "a list, or a mapping network -> list")
    controls: Annotated[list[Literal[CONTROLS]], BeforeValidator(_listed)] = \
        ["trained->trained"]
    seeds: Annotated[list[Seed], BeforeValidator(_listed), Field(min_length=1)] | None = \
        Field(None, description="an integer or a non-empty list of integers")
    repeats: Annotated[StrictInt, Field(ge=1, le=MAX_REPEATS)] | None = None
    random_seed: Seed = 0
    stitch: str = DEFAULT_STITCH
    resize: Literal[RESIZE_MODES] = "area"
    objective: Literal[OBJECTIVES] | None = None
    recipe: dict | None = None
    measures: Annotated[list[Literal[("stitch", *SIMILARITY)]], BeforeValidator(_listed),
                        Field(min_length=1)] = ["stitch"]
    similarity: dict = {}
    keep_stitches: bool = False
    diagonal: bool = False  # each sender point into the receiver's point of the same name
    interpret: dict | None = None


@dataclass
class DatasetSpec:
    name: str = "digits"
    root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None


class DatasetFields(BaseModel):
    model_config = STRICT
    name: str
    root: str | None = None
    train_subset: Annotated[StrictInt, Field(ge=1)] | None = None
    test_subset: Annotated[StrictInt, Field(ge=1)] | None = None


class InterpretFields(BaseModel):
    model_config = STRICT
    invert: bool | dict | None = Field(None, description="true or a mapping of settings")
    saliency: bool | dict | None = Field(None, description="true or a mapping of settings")
    ood: bool = False


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
    networks: dict[str, NetworkEntry]  # typed entries (plato.sweep.entries), levels expanded
    pairs: list[tuple[str, str]]
    points: dict[str, Any]  # network -> "all" | list of names/indices
    granularity: str = "block"
    controls: list[str] = field(default_factory=lambda: ["trained->trained"])
    seeds: list[int] = field(default_factory=lambda: [0])
    random_seed: int = 0
    stitch: str = DEFAULT_STITCH
    resize: str = "area"
    stitch_config: StitchConfig = field(default_factory=StitchConfig)  # objective + recipe
    measures: list[str] = field(default_factory=lambda: ["stitch"])
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    keep_stitches: bool = False
    diagonal: bool = False  # only cells between points of the same name
    interpret: InterpretSpec = field(default_factory=InterpretSpec)
    source: str = ""  # the YAML text, kept in the store and the report
    base_dir: Path = Path(".")


def _fields(kind: type[BaseModel], value, path: str = ""):
    """`value` as the pydantic model `kind`, or a SpecError naming the first wrong field."""
    try:
        return kind.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        at = ".".join(p for p in (path, where(first)) if p) or "<top level>"
        if first["type"] == "extra_forbidden":
            raise fail(at, f"unknown field; the fields are "
                           f"{', '.join(sorted(kind.model_fields))}") from None
        described = kind.model_fields.get(where(first))
        if described is not None and described.description and first["type"].endswith("_type"):
            raise fail(at, f"expected {described.description}, got {first['input']!r}") from None
        raise fail(at, problem(first)) from None


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    text = read_spec_file(path)
    raw = read_spec_yaml(text, str(path))
    return parse_spec(raw, source=text, base_dir=path.parent, default_name=path.stem)


def parse_spec(raw: Any, source: str = "", base_dir: Path = Path("."),
               default_name: str = "sweep") -> SweepSpec:
    expect(raw, dict, "<top level>", "a mapping of fields")
    if "seeds" in raw and "repeats" in raw:
        raise fail("seeds", "give seeds or repeats, not both")
    written = _fields(SpecFields, raw)
    name = safe_name(str(written.name if written.name is not None else default_name), "name")
    dataset = _dataset(written.dataset, base_dir)
    networks = parse_networks(written.networks, base_dir)
    families = _families(networks)
    pairs = _pairs(written.pairs, list(networks), families)
    points, granularity = _points(written.points, list(networks), families)
    seeds = list(range(written.repeats)) if written.repeats else (written.seeds or [0])
    _check_stitch_type(written.stitch)
    return SweepSpec(
        name=name, dataset=dataset, networks=networks, pairs=pairs, points=points,
        granularity=granularity, controls=list(written.controls), seeds=seeds,
        random_seed=written.random_seed, stitch=written.stitch, resize=written.resize,
        stitch_config=_stitch_config(written.objective, written.recipe or {}),
        measures=list(written.measures), similarity=_similarity(written.similarity),
        keep_stitches=written.keep_stitches, diagonal=written.diagonal,
        interpret=_interpret(written.interpret or {}), source=source, base_dir=base_dir,
    )


def _stitch_config(objective, recipe) -> StitchConfig:
    """The recipe over the default it means (StitchConfig.from_user): converging, or with
    `epochs` and no `budget` the fixed-epoch settings of the specs written before it."""
    expect(recipe, dict, "recipe", "a mapping of stitch-fitting settings")
    for key, instead in NOT_IN_RECIPE.items():
        if key in recipe:
            raise fail(f"recipe.{key}", f"not a recipe setting: {instead}")
    try:
        given = {**({"objective": objective} if objective else {}), **recipe}
        return StitchConfig.from_user(given)
    except SettingError as e:
        raise fail("objective" if e.setting == "objective" else f"recipe.{e.setting}",
                    str(e)) from None


def _similarity(value) -> SimilarityConfig:
    names = list(SimilarityConfig.__dataclass_fields__)
    expect(value, dict, "similarity", f"a mapping with any of {', '.join(names)}")
    for key in value:
        if key not in names:
            raise fail(f"similarity.{key}", f"unknown setting; allowed: {', '.join(names)}")
    try:
        return SimilarityConfig(**value)
    except SettingError as e:
        raise fail(f"similarity.{e.setting}", str(e)) from None


def _interpret(value) -> InterpretSpec:
    written = _fields(InterpretFields, value, "interpret")
    configs = {}
    for key, kind in (("invert", InvertConfig), ("saliency", SaliencyConfig)):
        given = getattr(written, key)
        if given is None or given is False:
            continue
        try:
            configs[key] = kind.from_user({} if given is True else given)
        except SettingError as e:
            raise fail(f"interpret.{key}.{e.setting}", str(e)) from None
    return InterpretSpec(configs.get("invert"), configs.get("saliency"), written.ood)


def _check_stitch_type(kind: str) -> None:
    try:  # the stitch registry is the one judge of what a type name means
        resolve_stitch(kind)
    except PlatoError as e:
        raise fail("stitch", str(e)) from None


def _dataset(value, base_dir: Path) -> DatasetSpec:
    written = _fields(DatasetFields, {"name": value} if isinstance(value, str) else value,
                      "dataset")
    name = written.name
    if name.startswith("imagefolder:"):  # a relative path is relative to the spec's folder
        path = Path(name.split(":", 1)[1]).expanduser()
        name = f"imagefolder:{path if path.is_absolute() else base_dir / path}"
    return DatasetSpec(name, written.root, written.train_subset, written.test_subset)


def _families(networks: dict[str, NetworkEntry]) -> dict[str, list[str]]:
    """Each compression axis's entry name -> its networks, level by level."""
    families: dict[str, list[str]] = {}
    for net in networks.values():
        family = getattr(net, "axis", None)
        if family is not None and family.family is not None:
            families.setdefault(family.family, []).append(net.name)
    return families


def _pairs(value, names: list[str], families: dict[str, list[str]] | None = None
           ) -> list[tuple[str, str]]:
    """`families`: a compression axis's name in a pair stands for each of its networks. The
    count is checked before any list is made (MAX_PAIRS)."""
    families = families or {}
    n = len(names)
    counts = {"all": n * n, "self": n, "distinct": n * (n - 1)}
    if isinstance(value, list):  # at most (a repeated pair counts once in the list made)
        counts["list"] = sum(len(families.get(str(a), [a])) * len(families.get(str(b), [b]))
                             for a, b in (i for i in value
                                          if isinstance(i, list | tuple) and len(i) == 2))
    count = counts.get("list" if isinstance(value, list) else str(value), 0)
    if count > MAX_PAIRS:
        raise fail("pairs", f"names {count:,} pairs of networks, more than a spec may "
                            f"({MAX_PAIRS:,}): choose the pairs to compare")
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
                raise fail("pairs", f"each pair is [sender, receiver], got {item!r}")
            for n in item:
                if n not in names and n not in families:
                    raise fail("pairs", f"'{n}' is not a network; networks: {', '.join(names)}")
            senders, receivers = (families.get(str(n), [str(n)]) for n in item)
            pairs += [(a, b) for a in senders for b in receivers]
        return list(dict.fromkeys(pairs))  # each once, in the order first named
    raise fail("pairs", f"expected {', '.join(PAIR_MODES)} or a list of [sender, receiver], "
                f"got {value!r}")


def _points(value, names: list[str], families: dict[str, list[str]] | None = None
            ) -> tuple[dict[str, Any], str]:
    families = families or {}
    granularity = "block"
    if isinstance(value, dict) and set(value) <= {"granularity"}:
        granularity = value.get("granularity", "block")
        if granularity not in ("block", "layer"):
            raise fail("points.granularity", f"'{granularity}' is not block or layer")
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
                raise fail(f"points.{n}", f"expected all or a list, got {chosen!r}")
            out[n] = chosen
        for n in value:
            if n not in names and n not in families:
                raise fail(f"points.{n}", f"'{n}' is not a network")
        return out, granularity
    raise fail("points", f"expected all, {{granularity: block|layer}}, a list, or a mapping "
                f"network -> list; got {value!r}")
