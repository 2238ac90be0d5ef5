"""What every similarity measure shares: inputs, layouts, scores with reasons, metadata.

Inputs are (n, d) arrays or tensors, or (n, c, h, w) activations turned into a matrix by an
explicit `layout` that never depends on layer names:

    flatten    one row per example: (n, c, h, w) -> (n, c*h*w)   (the default)
    positions  one row per spatial position: (n, c, h, w) -> (n*h*w, c); both sides must have
               the same h x w
    pool       one row per example, averaged over space: (n, c, h, w) -> (n, c)

Token activations (n, tokens, dim) of transformers take the same layouts: flatten keeps every
token, (n, tokens*dim); positions and pool read the patch tokens as a (dim, gh, gw) map (the
class and register tokens dropped, plato.models.tokens; the layout is inferred from the
number of tokens), so a ViT's tokens pair with a conv map of the same grid; a token count
without a square grid leaves every token a position.

A measure never crashes on degenerate input and never returns a silent NaN: too few examples
(n <= 3), non-finite values or a constant representation give a `Score` that is NaN and says
why in `.reason`. A Score is a float everywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from plato.errors import PlatoError
from plato.models.tokens import infer_layout

LAYOUTS = ("flatten", "positions", "pool")
TRANSFORMS = ("orthogonal", "isotropic-scaling", "translation", "invertible-linear",
              "permutation")
MIN_EXAMPLES = 4


class Score(float):
    """A float with the reason it is NaN, when it is."""

    reason: str | None

    def __new__(cls, value: float, reason: str | None = None) -> Score:
        obj = super().__new__(cls, value)
        obj.reason = reason
        return obj

    def __repr__(self) -> str:
        return f"Score(nan, {self.reason!r})" if self.reason else float.__repr__(self)


def rank_tolerance(largest: float, shape: tuple[int, ...], dtype: torch.dtype) -> float:
    """The size below which a singular value is rounding, not a direction: the largest one
    times the larger side times the dtype's machine epsilon (numpy.linalg.matrix_rank's
    default, after Press et al., Numerical Recipes, 2nd ed., sec. 2.6)."""
    return float(largest) * max(shape) * torch.finfo(dtype).eps


def undefined(reason: str) -> Score:
    return Score(math.nan, reason)


def as_matrix(x, layout: str = "flatten") -> torch.Tensor:
    """(n, d) float64 rows from an array or tensor of shape (n, d) or (n, c, h, w)."""
    if layout not in LAYOUTS:
        raise PlatoError(f"layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.detach().double()
    if t.ndim == 3 and layout == "flatten":
        return t.reshape(len(t), -1)  # (n, T, D) -> (n, T*D)
    if t.ndim == 3:
        t = _token_grid(t)  # (n, D, gh, gw)
    if t.ndim == 2:
        if layout == "positions":
            raise PlatoError("layout 'positions' needs (n, c, h, w) activations on both sides")
        return t
    if t.ndim != 4:
        raise PlatoError(f"a representation must be (n, d), (n, tokens, dim) or (n, c, h, w), "
                         f"got shape {tuple(t.shape)}")
    if layout == "flatten":
        return t.reshape(len(t), -1)  # (n, c, h, w) -> (n, c*h*w)
    if layout == "pool":
        return t.mean(dim=(2, 3))  # (n, c, h, w) -> (n, c)
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])  # (n, c, h, w) -> (n*h*w, c)


def _token_grid(t: torch.Tensor) -> torch.Tensor:
    """(n, T, D) tokens -> their patch tokens as a map (n, D, gh, gw); without a square grid
    every token is a position, (n, D, 1, T)."""
    layout = infer_layout(t.shape[1])
    if layout is None:
        return t.transpose(1, 2).unsqueeze(2)  # (n, D, 1, T)
    return layout.split(t)[0]


def _positions(x) -> tuple[int, ...]:
    """The spatial size a representation's positions come from (tokens: their grid)."""
    shape = tuple(np.shape(x))
    if len(shape) == 3:
        layout = infer_layout(shape[1])
        return layout.grid if layout is not None else (1, shape[1])
    return shape[2:]


def prepare(x, y, layout: str = "flatten",
            centre: bool = True) -> tuple[torch.Tensor, torch.Tensor] | Score:
    """Both sides as float64 matrices with the same rows (centred), or a NaN Score saying why."""
    if layout == "positions" and _positions(x) != _positions(y):
        raise PlatoError(f"layout 'positions' needs the same spatial size on both sides, got "
                         f"{_positions(x)} and {_positions(y)}")
    a, b = as_matrix(x, layout), as_matrix(y, layout)
    if len(a) != len(b):
        raise PlatoError(f"both representations must hold the same examples: {len(a)} rows "
                         f"vs {len(b)}")
    b = b.to(a.device)
    if len(a) < MIN_EXAMPLES:
        return undefined(f"{len(a)} examples: a similarity needs at least {MIN_EXAMPLES}")
    for name, m in (("x", a), ("y", b)):
        if not bool(torch.isfinite(m).all()):
            return undefined(f"{name} holds non-finite values")
    if centre:
        a, b = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)
        for name, m in (("x", a), ("y", b)):
            if not bool((m != 0).any()):
                return undefined(f"{name} is constant over the examples")
    return a, b


@dataclass(frozen=True)
class Measure:
    """A similarity measure and what it promises."""

    name: str
    fn: Callable[..., Score]
    larger_is_more_similar: bool
    invariant_to: frozenset[str]
    identity: float  # its value for two identical representations
    description: str
    options: dict = field(default_factory=dict)  # fixed keyword arguments
    chance: Callable[[int], float] | None = None  # its mean for unrelated data of n examples

    def __call__(self, x, y, **kwargs) -> Score:
        return self.fn(x, y, **{**self.options, **kwargs})


MEASURES: dict[str, Measure] = {}


def register(name: str, fn: Callable[..., Score], *, larger_is_more_similar: bool,
             invariant_to: tuple[str, ...], identity: float, description: str,
             chance: Callable[[int], float] | None = None, **options) -> Measure:
    unknown = set(invariant_to) - set(TRANSFORMS)
    assert not unknown, unknown
    MEASURES[name] = Measure(name, fn, larger_is_more_similar, frozenset(invariant_to),
                             identity, description, options, chance)
    return MEASURES[name]


def get_measure(name: str) -> Measure:
    if name not in MEASURES:
        raise PlatoError(f"unknown similarity measure '{name}': choose one of "
                         f"{', '.join(MEASURES)}")
    return MEASURES[name]
