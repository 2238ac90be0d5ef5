"""How a stitch is fitted: `StitchConfig`, its validation, the fast grid setting, and the
fields that name a result in a sweep's cell key."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from plato.data.loader import AUGMENT_PRESETS
from plato.device import resolve_device
from plato.errors import PlatoError, SettingError
from plato.settings import (
    INT64_MAX,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LR,
    MAX_STEPS,
    SEED,
    check_choice,
    check_numbers,
    check_types,
)
from plato.stitch.layers import CLASS_TOKEN_POLICIES

OBJECTIVES = ("task", "match", "lstsq", "lstsq+task", "translate", "final", "final+task")
CLOSED_ONLY = ("lstsq", "translate")  # objectives fitted without a gradient step
TRANSLATORS = ("linear", "orthogonal")  # translate's map between the standardised spaces
CACHE_TIERS = ("auto", "device", "disk", "off")
# StitchConfig.fast(): the converging rule, looser (BENCHMARKS.md, issue 16); on a GPU, where a
# step costs kernel launches rather than arithmetic, batches of 128.
FAST = {"tolerance": 0.02, "patience": 1, "max_steps": 1000}
FAST_BATCH = {"cuda": 128}

CHOICES = {"objective": OBJECTIVES, "optimizer": ("adam", "sgd"),
           "schedule": ("cosine", "constant"), "match_loss": ("mse", "l1"),
           "init": ("moments", "default"), "augment": AUGMENT_PRESETS,
           "precision": ("fp32", "bf16", "auto"), "activation_cache": CACHE_TIERS,
           "budget": ("epochs", "converge"), "class_token": CLASS_TOKEN_POLICIES,
           "translator": TRANSLATORS}
MIN_HOLDOUT = 32  # fewer held-out examples cannot tell an improvement from noise
# The default of every entry point (StitchConfig.converging(); BENCHMARKS.md, issue 16): the
# closed form from 4,096 random training examples, then the task loss with SGD (Nesterov) at
# lr 0.03, batch 64, until the held-out loss stops improving, once more at lr 0.003 (lr 0.1
# overshoots a closed form that is already near the optimum; 0.01 stopped further from the
# converged answers at more cost), with the receiver's own label smoothing (plain
# cross-entropy re-fits a network trained with smoothing to sharper logits on its own
# training images: self-pairs ended up to 1.6 points below it).
CONVERGING = {"objective": "lstsq+task", "budget": "converge", "optimizer": "sgd", "lr": 0.03,
              "batch_size": 64, "precision": "auto", "decays": 1, "patience": 2,
              "min_steps": 100, "label_smoothing": "receiver", "lstsq_examples": 4096}
# Settings that ask for a fixed number of epochs: given without `budget`, they mean it.
FIXED_BUDGET = ("epochs", "more_epochs", "improving")


@dataclass
class StitchConfig:
    """How a stitch is fitted (the objectives: plato.stitch.fit). Fields marked "speed" change
    how fast a result comes, not the result (at most its rounding)."""

    objective: str = "task"  # task | match | lstsq | lstsq+task | translate | final |
    #                          final+task (plato.stitch.fit)
    epochs: int = 3  # passes over the training split in the first SGD cycle (lstsq: none)
    batch_size: int = 128  # examples per SGD step and per closed-form statistics batch
    optimizer: str = "adam"  # adam | sgd (Nesterov, momentum 0.9)
    lr: float = 1e-3  # peak learning rate of each SGD cycle
    schedule: str = "cosine"  # cosine (peak to 0 over a cycle, no warmup) | constant
    weight_decay: float = 0.0  # L2 penalty on every stitch parameter
    match_loss: str = "mse"  # mse | l1: the distance `match` minimises
    label_smoothing: float | str = 0.0  # task loss: of the targets, or "receiver" (the one the
    #                                     receiver was trained with, from its checkpoint)
    ridge: float = 1e-4  # lstsq ridge, as a fraction of the mean input variance
    lstsq_examples: int = 0  # closed form from this many random training examples (0: all)
    init: str = "moments"  # task/match start: moments (receiver's channel mean, std) | default
    more_epochs: int = 0  # at most this many further one-epoch cycles, for cells still improving
    improving: float = 0.05  # a cell goes on while its last-quarter loss fell by this fraction
    budget: str = "epochs"  # epochs (`epochs`, `more_epochs`) | converge (the rule below)
    holdout: int = 0  # converge: training examples held out to decide when to stop (0: a
    #                   tenth of the training split, at most 1,024)
    check_every: int = 50  # converge: SGD steps between looks at the held-out loss
    tolerance: float = 0.01  # converge: a look improves when it beats the best by this fraction
    patience: int = 3  # converge: a cell stops after this many looks without improving
    decays: int = 0  # converge: plateaus at which the learning rate drops tenfold before one stops
    min_steps: int = 200  # converge: SGD steps before the rule may stop a cell
    max_steps: int = 5000  # converge: SGD steps at most (a cell cut off here did not converge)
    class_token: str = "map"  # a token receiver's class/register tokens: map (the sender's,
    #                           through the map) | mean (of the stitched patches) | learned
    augment: str = "none"  # augmentation of the training data (plato.data.Augment presets)
    precision: str = "fp32"  # SGD phase: fp32 | bf16 | auto (bf16 where the device has it)
    channels_last: bool = True  # NHWC activations (speed; same answers up to rounding)
    stacking: bool = True  # task loss: cells sharing a receiver suffix run it once (speed)
    fold_batchnorm: bool = True  # task loss: suffix BatchNorms folded into the convs (speed)
    activation_cache: str = "auto"  # later epochs' frozen activations: auto|device|disk|off (speed)
    cell_threads: int = 0  # CPU threads running cells side by side (speed; 0: torch's threads)
    seed: int = 0  # the stitch's initialisation, the data order, the closed form's subset
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # translate (Maiorca et al. 2023): each side standardised with the statistics of `anchors`
    # random training examples, `translator` between them (linear: least squares;
    # orthogonal: Procrustes, the narrower side zero-padded), then the receiver's scale
    translator: str = "orthogonal"  # linear | orthogonal
    anchors: int = 1024  # training examples the translation is estimated from

    def __post_init__(self) -> None:
        check_types(self, "stitch")
        check_numbers(self, "stitch", {
            "epochs": (0, MAX_EPOCHS), "more_epochs": (0, MAX_EPOCHS),
            "batch_size": (1, MAX_BATCH), "lr": (0, MAX_LR), "weight_decay": (0, 1),
            "ridge": (0, 1e6), "check_every": (1, MAX_STEPS), "patience": (1, 10**6),
            "decays": (0, 30), "min_steps": (0, MAX_STEPS), "max_steps": (1, MAX_STEPS),
            "cell_threads": (0, 4096), "seed": SEED, "anchors": (2, INT64_MAX)})
        for name, allowed in CHOICES.items():
            check_choice(self, name, allowed, "stitch")
        for name, low, what in (("epochs", 0, ">= 0"), ("batch_size", 1, ">= 1"),
                                ("lstsq_examples", 0, ">= 0 (0: every training example)"),
                                ("more_epochs", 0, ">= 0"),
                                ("check_every", 1, ">= 1"), ("patience", 1, ">= 1"),
                                ("decays", 0, ">= 0"),
                                ("min_steps", 0, ">= 0"), ("max_steps", 1, ">= 1"),
                                ("cell_threads", 0, ">= 0 (0: as many as torch uses)")):
            if getattr(self, name) < low:
                raise SettingError(name, f"stitch {name} must be {what}, "
                                   f"got {getattr(self, name)}")
        smoothing = self.label_smoothing
        if not (smoothing == "receiver" if isinstance(smoothing, str) else 0 <= smoothing < 1):
            raise SettingError("label_smoothing", "stitch label_smoothing must be a number in "
                               "[0, 1) or 'receiver' (the receiver's own), "
                               f"got {self.label_smoothing!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SettingError("lr", f"stitch lr must be a positive number, got {self.lr}")
        if 0 < self.holdout < MIN_HOLDOUT or self.holdout < 0:
            raise SettingError("holdout", f"stitch holdout must be 0 (automatic) or >= "
                               f"{MIN_HOLDOUT} (fewer cannot tell an improvement from noise), "
                               f"got {self.holdout}")
        if not 0 <= self.tolerance < 1:
            raise SettingError("tolerance", f"stitch tolerance must be in [0, 1), "
                               f"got {self.tolerance}")
        if self.min_steps > self.max_steps:
            raise SettingError("min_steps", f"stitch min_steps ({self.min_steps}) exceeds "
                               f"max_steps ({self.max_steps})")
        if not 0 <= self.improving < 1:
            raise SettingError("improving", f"stitch improving must be in [0, 1), "
                               f"got {self.improving}")
        if self.epochs == 0 and self.objective in ("task", "match", "final", "final+task") \
                and self.budget == "epochs":
            raise SettingError("epochs", f"objective '{self.objective}' needs at least one "
                               "epoch")

    @classmethod
    def from_fields(cls, values: dict, base: StitchConfig | None = None) -> StitchConfig:
        """`base` (default: the defaults) with `values` set, each name checked: a user's
        settings from a spec or the command line."""
        names = [f.name for f in fields(cls)]
        for name in values:
            if name not in names:
                raise SettingError(name, f"unknown stitch setting '{name}'; the settings "
                                   f"are {', '.join(names)}")
        return cls(**{**(base or cls()).to_dict(), **values})

    @classmethod
    def converging(cls, **overrides) -> StitchConfig:
        """The default of `plato stitch`, `plato replace`, `stitch_networks`, `replace_span`
        and a sweep spec: fitted until a held-out slice of the training split says each stitch
        has converged (CONVERGING). `StitchConfig()` alone is the fixed 3-epoch budget."""
        return cls(**{**CONVERGING, **overrides})

    @classmethod
    def from_user(cls, values: dict, fast: bool = False) -> StitchConfig:
        """A user's settings over the default they mean: the fast setting when asked for;
        the fields of `StitchConfig()` when `epochs` (or `more_epochs`) is given without a
        budget, as before the converging default, or for the closed form alone (no SGD to
        converge); else the converging default. `epochs` without a budget always means a
        fixed number of epochs (with `fast`: of its optimiser)."""
        fixed = "budget" not in values and any(name in values for name in FIXED_BUDGET)
        if fast:  # with `epochs`: the fast setting's optimiser for that many epochs
            base = cls.fast(device=values.get("device", "auto"))
            values = {"label_smoothing": 0.0, **values, "budget": "epochs"} if fixed \
                else values  # fixed: as the fast setting was before the converging rule
        elif fixed or values.get("objective") in CLOSED_ONLY:
            base = cls()
        else:
            base = cls.converging()
        return cls.from_fields(values, base)

    @classmethod
    def fast(cls, **overrides) -> StitchConfig:
        """The fast setting for whole grids: the converging default with a looser rule (a look
        must beat the best by 2%; one look without that ends a phase) and at most 1,000 steps
        (the cells it cuts off say they did not converge); batches of 64, on a GPU 128."""
        device = overrides.get("device", "auto")
        try:
            kind = (resolve_device(device) if device == "auto" else torch.device(device)).type
        except (RuntimeError, PlatoError):
            kind = "cpu"  # an unusable device is reported where the config is used
        return cls.converging(**{**FAST, "batch_size": FAST_BATCH.get(kind, 64), **overrides})

    @property
    def sgd_epochs(self) -> int:
        return 0 if self.objective in CLOSED_ONLY else self.epochs

    def holdout_examples(self, train: int) -> int:
        """The examples held out of a training split of `train` (the rule's decisions)."""
        n = self.holdout or min(1024, train // 10)
        if n >= train or n < MIN_HOLDOUT:
            raise SettingError("holdout", f"cannot hold out {n} of {train} training examples "
                               f"to decide when to stop: the rule needs at least "
                               f"{MIN_HOLDOUT} and some left to train on; set holdout")
        return n

    def smoothing_for(self, receivers: list[float]) -> float:
        """The task loss's label smoothing for stitches into receivers trained with
        `receivers` (one fit, one loss: `receiver` needs them to agree)."""
        if self.label_smoothing != "receiver":
            return float(self.label_smoothing)
        if len(set(receivers)) > 1:
            raise PlatoError("label_smoothing 'receiver': the stitches fitted together go "
                             f"into receivers trained with different smoothing "
                             f"({sorted(set(receivers))}); fit them apart or set a number")
        return receivers[0] if receivers else 0.0

    @property
    def converges(self) -> bool:
        """Is there an SGD phase whose end the held-out rule decides?"""
        return self.budget == "converge" and self.objective not in CLOSED_ONLY

    def to_dict(self) -> dict:
        return asdict(self)

    def key_fields(self) -> dict:
        """The fields that name a result in a sweep cell's key. Left out: the seed (the key
        holds it apart), where and how fast it runs (device, cache, threads), and fields
        added after stores were first written while they hold the value that behaves as
        before, so the keys of finished cells never change."""
        out = self.to_dict()
        for name in ("seed", "device", "activation_cache", "cell_threads"):
            del out[name]
        for name, as_before in (("more_epochs", 0), ("lstsq_examples", 0), ("stacking", True),
                                ("fold_batchnorm", True), ("decays", 0),
                                ("label_smoothing", 0.0), ("class_token", "map")):
            if out[name] == as_before:
                del out[name]
        if "more_epochs" not in out:
            del out["improving"]  # decides nothing without further epochs
        if self.objective != "translate":  # settings of translate alone
            del out["translator"], out["anchors"]
        if self.budget == "epochs":  # the budget stores were first written with
            for name in ("budget", "holdout", "check_every", "tolerance", "patience",
                         "decays", "min_steps", "max_steps"):
                out.pop(name, None)
        return out
