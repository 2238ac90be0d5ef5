"""Validating config dataclasses (StitchConfig, SimilarityConfig): settings from YAML or a
command line arrive untyped, and an error names the setting (errors.SettingError)."""

from __future__ import annotations

from dataclasses import fields

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
          "float | str": ((int, float, str), "a number or a name")}


def check_choice(config, name: str, allowed: tuple[str, ...], what: str) -> None:
    """The setting `name` of `config` is one of `allowed`."""
    if getattr(config, name) not in allowed:
        raise SettingError(name, f"{what} {name} '{getattr(config, name)}' is not one of "
                           f"{', '.join(allowed)}")
