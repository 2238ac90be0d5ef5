"""Reading a spec's YAML: numbers as a researcher writes them, and a bounded size.

PyYAML's safe loader follows YAML 1.1, where a float needs a dot and a signed exponent: `3e-3`
and `1e6` are strings there, while YAML 1.2, JSON and Python read them as numbers. Aliases let
a few hundred bytes name a document of billions of values (each alias is one shared object
after loading, but anything that walks the spec whole, an error message included, expands
them): a spec is refused before anything walks it.

The pure-Python loader costs about 40 us a value and 0.4 us a byte, and recurses once a level
of nesting: a 10 MB spec of 600,000 keys took 4 minutes and 1.3 GB, one nested 50,000 deep
was a RecursionError. So the file is refused by size before it is read, and by its count of
values and depth of nesting while it is composed, at the first value past a limit (each far
above a real study's spec, which is a few KB of a few hundred values, nested under 10 deep).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from plato.errors import SpecError

# Floats as YAML 1.2 writes them (PyYAML's own resolver, tried first, keeps its 1.1 forms):
# 1.5, 1., 1.5e3 | 1e6, 3e-3 | .5, .5e-3. An integer (no dot, no exponent) stays an integer.
FLOAT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                      |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                      |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$""", re.X)
MAX_BYTES = 1 << 20  # a spec file's size (the largest example's is 3 KB)
MAX_VALUES = 10_000  # values (keys, items, scalars) in a spec, as written and aliases expanded
MAX_DEPTH = 32  # levels of nesting (a spec's deepest field is 5 levels down)


class SpecLoader(yaml.SafeLoader):
    """The safe loader (no Python tags: they are refused) with YAML 1.2 floats, refusing a
    document past MAX_VALUES values or MAX_DEPTH levels as soon as it gets there."""

    def __init__(self, stream, source: str = "the spec") -> None:
        super().__init__(stream)
        self.source, self.values, self.depth = source, 0, 0

    def compose_node(self, parent, index):
        self.values += 1
        if self.values > MAX_VALUES:
            raise SpecError(f"{self.source}: more than {MAX_VALUES:,} values; a study's spec "
                            "is far smaller (is this the file you meant?)")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpecError(f"{self.source}: nested more than {MAX_DEPTH} levels deep (line "
                            f"{self.peek_event().start_mark.line + 1}); a spec's fields are at "
                            "most a few levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def read_spec_file(path: Path) -> str:
    """The text of the spec file at `path`, refused by size before it is read."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SpecError(f"sweep spec {path} is {size:,} bytes, more than a spec may be "
                        f"({MAX_BYTES:,}; a study's spec is a few KB): is this the file you "
                        "meant?")
    try:
        return path.read_bytes()[:MAX_BYTES].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"sweep spec {path} is not UTF-8 text (byte {e.start}): is this the "
                        "file you meant?") from None


def read_spec_yaml(text: str, source: str) -> object:
    """The YAML document in `text` (`source` names it in errors), its size checked."""
    loader = SpecLoader(text, source)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as e:
        raise SpecError(f"{source} is not valid YAML: {e}") from None
    finally:
        loader.dispose()
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
