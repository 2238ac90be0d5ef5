"""The settings of the interpretation methods, one dataclass each, every field one line.
Kept apart from the methods so that reading them (the CLI's help) imports no metrics library."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from plato.errors import SettingError
from plato.settings import MAX_BATCH, MAX_LR, MAX_STEPS, SEED, check_numbers

# The saliency methods (plato.interpret.saliency says what each is).
METHODS = ("integrated_gradients", "gradient_x_input", "grad_cam")
ROLES = ("sender", "receiver", "stitched")  # the networks a stitched cell's saliency explains
MAX_IMAGES = 100_000  # test images a method explains or pictures (each one's maps are kept)


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
    patience: int = 3  # ...within this many looks, or the decoder has plateaued:
    decays: int = 1  # its lr drops tenfold at its first plateaus this many times, then it stops
    min_steps: int = 300
    max_steps: int = 3000  # a decoder still improving here has not converged
    optimise_steps: int = 300  # Adam steps of the optimisation-based inversion (0: none)
    optimise_lr: float = 0.05
    tv_weight: float = 0.05  # total-variation prior, relative to the feature error
    seed: int = 0

    def __post_init__(self) -> None:
        check_numbers(self, "invert setting", {
            "images": (1, MAX_IMAGES), "width": (1, 4096), "batch_size": (1, MAX_BATCH),
            "lr": (0, MAX_LR), "optimise_lr": (0, MAX_LR), "check_every": (1, MAX_STEPS),
            "patience": (1, 10**6), "decays": (0, 30), "min_steps": (0, MAX_STEPS),
            "max_steps": (1, MAX_STEPS), "optimise_steps": (0, MAX_STEPS), "seed": SEED})
        for name in ("images", "width", "batch_size", "holdout", "check_every", "patience",
                     "max_steps"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"invert setting '{name}' must be at least 1, got "
                                         f"{getattr(self, name)}")
        for name in ("lr", "optimise_lr"):
            if not getattr(self, name) > 0:
                raise SettingError(name, f"invert setting '{name}' must be positive")
        for name in ("optimise_steps", "tv_weight", "tolerance", "decays", "min_steps"):
            if getattr(self, name) < 0:
                raise SettingError(name, f"invert setting '{name}' must not be negative")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_user(cls, settings: dict) -> InvertConfig:
        """Settings by name (the CLI's --set, a spec's interpret.invert), each checked."""
        return _from_user(cls, "invert", settings)


@dataclass
class SaliencyConfig:
    """How saliency maps are computed and compared; every field one line."""

    images: int = 64  # test images the agreement and deletion scores average over
    shown: int = 8  # of those, the first ones kept for pictures
    methods: tuple[str, ...] = METHODS  # the first is the headline a sweep's tables show
    ig_steps: int = 32  # Integrated Gradients' steps from the baseline (the mean image)
    deletion_steps: int = 16  # the deletion curve's points after the first
    batch_size: int = 32
    seed: int = 0  # the random deletion order of the baseline

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise SettingError("methods", f"unknown saliency method(s) "
                                          f"{', '.join(unknown) or '(none given)'}: choose "
                                          f"from {', '.join(METHODS)}")
        check_numbers(self, "saliency setting", {
            "images": (1, MAX_IMAGES), "shown": (1, MAX_IMAGES), "ig_steps": (1, 10**5),
            "deletion_steps": (1, 10**5), "batch_size": (1, MAX_BATCH), "seed": SEED})
        for name in ("images", "shown", "ig_steps", "deletion_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"saliency setting '{name}' must be at least 1, "
                                         f"got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "methods": list(self.methods)}

    @classmethod
    def from_user(cls, settings: dict) -> SaliencyConfig:
        return _from_user(cls, "saliency", settings)


def _from_user(cls, what: str, settings: dict):
    """A config from settings by name, each name and type checked (a list for a tuple)."""
    names = [f.name for f in fields(cls)]
    default = cls()
    checked = {}
    for name, value in settings.items():
        if name not in names:
            raise SettingError(name, f"unknown {what} setting '{name}'; the settings: "
                                     f"{', '.join(names)}")
        kind = type(getattr(default, name))
        if kind is tuple:
            value = tuple(value.split(",")) if isinstance(value, str) else value
            if not isinstance(value, list | tuple):
                raise SettingError(name, f"{what} setting '{name}' takes a list, got {value!r}")
            value = tuple(value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            words = {int: "an integer", float: "a number", bool: "true or false"}
            raise SettingError(name, f"{what} setting '{name}' takes "
                                     f"{words.get(kind, 'a ' + kind.__name__)}, got {value!r}")
        checked[name] = value
    return cls(**checked)
