"""Reading a spec's YAML: numbers as a researcher writes them, and a bounded size.

PyYAML's safe loader follows YAML 1.1, where a float needs a dot and a signed exponent: `3e-3`
and `1e6` are strings there, while YAML 1.2, JSON and Python read them as numbers. Aliases let
a few hundred bytes name a document of billions of values (each alias is one shared object
after loading, but anything that walks the spec whole, an error message included, expands
them): a spec is refused before anything walks it.
"""

from __future__ import annotations

import re

import yaml

from plato.errors import SpecError

# Floats as YAML 1.2 writes them (PyYAML's own resolver, tried first, keeps its 1.1 forms):
# 1.5, 1., 1.5e3 | 1e6, 3e-3 | .5, .5e-3. An integer (no dot, no exponent) stays an integer.
FLOAT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                      |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                      |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$""", re.X)
MAX_VALUES = 100_000  # values in a spec, aliases expanded: far above any real study's


class SpecLoader(yaml.SafeLoader):
    """The safe loader (no Python tags: they are refused) with YAML 1.2 floats."""


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def read_spec_yaml(text: str, source: str) -> object:
    """The YAML document in `text` (`source` names it in errors), its size checked."""
    try:
        raw = yaml.load(text, Loader=SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise SpecError(f"{source} is not valid YAML: {e}") from None
    _check_size(raw, source)
    return raw


def _check_size(raw: object, source: str) -> None:
    """Refuse a document of more than MAX_VALUES values, counting each alias's values every
    time it is used (the walk stops at the limit, so a bomb costs no more than that)."""
    count, stack = 0, [raw]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise SpecError(f"{source}: the spec expands to more than {MAX_VALUES:,} values "
                            "(nested YAML aliases?); a study's spec is far smaller: write "
                            "out what it means")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
