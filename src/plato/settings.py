"""Validating config dataclasses (StitchConfig, SimilarityConfig, Recipe, ...): settings from
YAML or a command line arrive untyped, and an error names the setting (errors.SettingError).
A dataclass's annotations are its settings' types: `typed` checks values against them through
a strict pydantic model made from the dataclass (`fields_model`), and `problem` says a
pydantic error in Plato's words."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import fields

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from plato.errors import SettingError


def check_types(config, what: str) -> None:
    """Each field of a config dataclass holds a value of its annotated kind (an int is a
    float; a bool is not a number): settings from YAML or a command line arrive untyped."""
    for f in fields(config):
        value = getattr(config, f.name)
        kinds = _KINDS[f.type]
        if not isinstance(value, kinds[0]) or (isinstance(value, bool) and bool not in kinds[0]):
            raise SettingError(f.name, f"{what} {f.name} must be {kinds[1]}, got {value!r}")


_KINDS = {"int": ((int,), "an integer"), "float": ((int, float), "a number"),
          "bool": ((bool,), "true or false"), "str": ((str,), "a string"),
          "int | None": ((int, type(None)), "an integer or null"),
          "float | None": ((int, float, type(None)), "a number or null"),
          "float | str": ((int, float, str), "a number or a name")}


# Bounds every config's numbers share. An integer beyond int64 overflows torch and SQLite
# after the work it names is done; a budget of 10^11 epochs runs for centuries: both refused
# before any work. Each limit is far above what a study asks for.
INT64_MAX = 2**63 - 1
MAX_EPOCHS = 10_000  # passes over a training split
MAX_BATCH = 2**20  # examples a step
MAX_STEPS = 10**9  # optimisation steps
MAX_LR = 100.0  # a learning rate (the largest any recipe uses is 0.1 x batch / 256)
SEED = (0, INT64_MAX)  # a seed's range


def check_numbers(config, what: str, ranges: dict[str, tuple[float, float]]) -> None:
    """Every number of a config is finite and each integer fits int64; a field in `ranges`
    lies in its [low, high]. (None values are a field's "automatic" and pass.)"""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(f.name, f"{what} {f.name} must be a finite number, got {value}")
        low, high = ranges.get(f.name, (-INT64_MAX, INT64_MAX))
        if not low <= value <= high:
            raise SettingError(f.name, f"{what} {f.name} must be in [{low:,}, {high:,}], got "
                               f"{value:,}")


def check_choice(config, name: str, allowed: tuple[str, ...], what: str) -> None:
    """The setting `name` of `config` is one of `allowed`."""
    if getattr(config, name) not in allowed:
        raise SettingError(name, f"{what} {name} '{getattr(config, name)}' is not one of "
                           f"{', '.join(allowed)}")


# -- typed settings from their dataclass (pydantic) ---------------------------------------------

STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)  # as written, nothing coerced
_KIND_OF = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
            "string_type": "a string", "dict_type": "a mapping", "model_type": "a mapping",
            "list_type": "a list", "tuple_type": "a list", "none_required": "null"}


def problem(error: dict) -> str:
    """One pydantic error in the words of Plato's other messages."""
    kind, given = error["type"], error.get("input")
    if kind == "missing":
        return "missing"
    if kind in _KIND_OF:
        return f"expected {_KIND_OF[kind]}, got {given!r}"
    if kind == "literal_error":
        allowed = error["ctx"]["expected"].replace(" or ", ", ").replace("'", "")
        return f"'{given}' is not one of {allowed}"
    if kind == "too_short":
        return f"expected at least {error['ctx']['min_length']} values, got {given!r}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {given!r}"


def where(error: dict) -> str:
    """A pydantic error's location as a dotted path of field names (union branches and list
    positions left out: the message shows the value)."""
    return ".".join(str(part) for part in error["loc"]
                    if not isinstance(part, int) and not _branch(part))


def _branch(part) -> bool:
    """A union's branch in a location ('int', 'list[int]', 'function-before[...]')."""
    return isinstance(part, str) and ("[" in part or part in _UNION_BRANCHES)


_UNION_BRANCHES = {"int", "float", "str", "bool", "list", "dict", "none", "literal"}


@functools.cache
def fields_model(cls) -> type[BaseModel]:
    """A strict pydantic model of a config dataclass's fields: their annotated types and
    defaults (so a setting's type is declared once, on the dataclass)."""
    hints = typing.get_type_hints(cls)

    def field(f: dataclasses.Field):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = hints[f.name]
        if typing.get_origin(kind) is tuple:  # YAML and --set give lists: read as tuples
            kind = typing.Annotated[kind, BeforeValidator(_as_tuples)]
        return kind, Field(default)

    return create_model(f"{cls.__name__}Fields", __config__=STRICT,
                        **{f.name: field(f) for f in dataclasses.fields(cls)})


def _as_tuples(value):
    """Lists, nested too, as tuples."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def typed(cls, values: dict, what: str):
    """`cls(**values)` with each value of its field's type (as written: no coercion, an int
    for a float excepted), named in the SettingError of the first wrong one; the dataclass
    checks its ranges."""
    names = [f.name for f in dataclasses.fields(cls)]
    for name in values:
        if name not in names:
            raise SettingError(name, f"unknown {what} setting '{name}'; the settings are "
                               f"{', '.join(names)}")
    try:
        fields_model(cls).model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        setting = where(first) or next(iter(values), "")
        raise SettingError(setting.split(".")[0], f"{what} {setting}: {problem(first)}"
                           ) from None
    return cls(**values)
