"""Validating config dataclasses (StitchConfig, SimilarityConfig, Recipe, ...): settings from
YAML or a command line arrive untyped, and an error names the setting (errors.SettingError).
A dataclass's annotations are its settings' types: `typed` checks values against them through
a strict pydantic model made from the dataclass (`fields_model`), and `problem` says a
pydantic error in Plato's words."""

from __future__ import annotations

import dataclasses
import functools
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
