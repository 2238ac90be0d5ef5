"""Model registry: create models by name, list them with shell wildcards.

Two kinds of entries: exact names (`resnet18`) and families whose names carry their
configuration (`resnet-ABCD`, `cnn-N`, `mlp-W1xW2x...`). A family lists a few example names;
any name matching its pattern can be created.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import create_model as pydantic_model
from torch import nn

from plato.errors import ModelError, SettingError
from plato.models.external import build as build_external
from plato.models.external import factory, is_external, options_of
from plato.settings import problem

# Sizes refused before building (a typo like cnn-99999 would run for minutes without a word):
# far above any network a stitching study compares.
MAX_WIDTH = 4096  # channels of a conv net's first stage, units of an MLP's hidden layer
MAX_BLOCKS = 256  # blocks of a cnn-N, hidden layers of an mlp


@dataclass(frozen=True)
class _Family:
    pattern: re.Pattern
    builder: Callable[..., nn.Module]
    examples: tuple[str, ...]
    syntax: str


_EXACT: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: list[_Family] = []


def register_model(name: str):
    """Register `builder(num_classes, input_shape, **options)` under an exact name."""

    def wrap(builder):
        _EXACT[name] = builder
        return builder

    return wrap


def register_family(pattern: str, syntax: str, examples: tuple[str, ...]):
    """Register `builder(match, num_classes, input_shape, **options)` for names matching a regex."""

    def wrap(builder):
        _FAMILIES.append(_Family(re.compile(pattern + r"\Z"), builder, examples, syntax))
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names (and the families' example names) matching a shell wildcard."""
    names = set(_EXACT) | {ex for fam in _FAMILIES for ex in fam.examples}
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def model_syntax() -> list[str]:
    """The name patterns of the families, for help texts."""
    return [fam.syntax for fam in _FAMILIES]


def _builder(name: str) -> tuple[Callable[..., nn.Module], tuple]:
    if name in _EXACT:
        return _EXACT[name], ()
    for fam in _FAMILIES:
        match = fam.pattern.match(name)
        if match:
            return fam.builder, (match,)
    raise ModelError(
        f"unknown model '{name}': see `plato models`; names are "
        f"{', '.join(sorted(_EXACT))} or one of {', '.join(model_syntax())}"
    )


def check_option_types(name: str, options: dict) -> None:
    """Each option of model `name` of the type its builder annotates, as written: '4' is not a
    width, 1 is not true (a YAML string or a --option typo would otherwise reach the builder
    and fail deep in torch, or be read as truthy). Options of library models (timm,
    torchvision: **kwargs, no annotations) are their constructor's to check. A SettingError
    names the option."""
    builder, library = factory(name) if is_external(name) else (_builder(name)[0], False)
    checker = None if library else _option_checker(builder)
    if checker is None:
        return
    try:
        checker.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        option = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingError(option, f"model '{name}' option {option}: {problem(first)}"
                           ) from None


_PLAIN = (int, float, bool, str, type(None))  # option types checked; any other is the model's
_OPTIONS = ConfigDict(strict=True, extra="ignore")  # strict: as written; an int is a float


@functools.cache
def _option_checker(builder: Callable) -> type[BaseModel] | None:
    """A strict pydantic model of the builder's plainly annotated options (int, float, bool,
    str, X | None), or None where it annotates none (a factory's own hints may not resolve)."""
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # a python: factory's annotation naming what its module cannot see
        return None
    checked = {}
    for option, hint in hints.items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        parts = typing.get_args(hint) if union else (hint,)
        if option not in ("return", "num_classes", "input_shape") and all(
                p in _PLAIN for p in parts):
            checked[option] = (hint, None)  # a default is not validated: only what is given
    if not checked:
        return None
    return pydantic_model(f"{getattr(builder, '__name__', 'model')}Options",
                          __config__=_OPTIONS, **checked)


def model_options(name: str) -> list[str]:
    """The options that build model `name` (width, batchnorm, ...), beyond the number of
    classes and the input shape."""
    if is_external(name):
        return options_of(name)[0]
    builder, _ = _builder(name)
    return [p for p in inspect.signature(builder).parameters
            if p not in ("match", "num_classes", "input_shape")]


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **options,
) -> nn.Module:
    """Build a model. `input_shape` (C, H, W) defaults to (in_channels or 3, 32, 32).

    The model keeps `plato_name` and `plato_config` (everything needed to build it again, as
    checkpoints store it), `input_shape`, and `cut_blocks` (its block-level cut points).
    """
    if input_shape is None:
        input_shape = (in_channels or 3, 32, 32)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ModelError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    if in_channels is not None and in_channels != input_shape[0]:
        raise ModelError(f"in_channels={in_channels} contradicts input_shape={input_shape}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")

    if is_external(name):  # python:, timm:, torchvision: (plato.models.external)
        allowed, any_other = options_of(name)
        builder, args = functools.partial(build_external, name), ()
    else:
        builder, args = _builder(name)
        allowed, any_other = model_options(name), False
    unknown = sorted(set(options) - set(allowed))
    if unknown and not any_other:
        raise ModelError(
            f"model '{name}' has no option {', '.join(unknown)}: its options are "
            f"{', '.join(allowed) or 'none'}"
        )
    check_option_types(name, options)
    width = options.get("width")
    if isinstance(width, int) and width > MAX_WIDTH:
        raise ModelError(f"model '{name}': width {width} is more than Plato builds "
                         f"({MAX_WIDTH}); such a network would take minutes to build and "
                         "gigabytes to hold")
    model = builder(*args, num_classes=num_classes, input_shape=input_shape, **options)
    model.plato_name = name
    model.plato_config = {"num_classes": num_classes, "input_shape": list(input_shape), **options}
    model.input_shape = input_shape
    return model
