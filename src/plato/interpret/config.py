"""The settings of the interpretation methods, one dataclass each, every field one line.
Kept apart from the methods so that reading them (the CLI's help) imports no metrics library."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from plato.errors import SettingError


@dataclass
class InvertConfig:
    """How reconstructions are fitted and measured; every field one line."""

    images: int = 8  # test images in pictures and inverted by optimisation (a class each first)
    width: int = 64  # the decoder's channels at its widest (halved per up-convolution, >= 16)
    batch_size: int = 64
    lr: float = 2e-3  # Adam, the decoder
    holdout: int = 512  # training examples held out for the decoder's stopping rule
    check_every: int = 100  # decoder steps between looks at the held-out MSE
    tolerance: float = 0.01  # a look must beat the best by this much (relative)...
    patience: int = 3  # ...within this many looks, or the decoder has converged
    min_steps: int = 300
    max_steps: int = 3000  # a decoder still improving here has not converged
    optimise_steps: int = 300  # Adam steps of the optimisation-based inversion (0: none)
    optimise_lr: float = 0.05
    tv_weight: float = 0.05  # total-variation prior, relative to the feature error
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("images", "width", "batch_size", "holdout", "check_every", "patience",
                     "max_steps"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"invert setting '{name}' must be at least 1, got "
                                         f"{getattr(self, name)}")
        for name in ("lr", "optimise_lr"):
            if not getattr(self, name) > 0:
                raise SettingError(name, f"invert setting '{name}' must be positive")
        if self.optimise_steps < 0 or self.tv_weight < 0 or self.tolerance < 0:
            raise SettingError("optimise_steps", "optimise_steps, tv_weight and tolerance "
                                                 "must not be negative")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_user(cls, settings: dict) -> InvertConfig:
        """Settings by name (the CLI's --set, a spec's interpret.invert), each checked."""
        names = [f.name for f in fields(cls)]
        for name, value in settings.items():
            if name not in names:
                raise SettingError(name, f"unknown invert setting '{name}'; the settings: "
                                         f"{', '.join(names)}")
            kind = type(getattr(cls(), name))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
                raise SettingError(name, f"invert setting '{name}' takes a {kind.__name__}, "
                                         f"got {value!r}")
            settings = {**settings, name: value}
        return cls(**settings)
