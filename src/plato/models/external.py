"""Models from outside the zoo, by name, wherever a zoo name is accepted:

    python:package.module:factory   any importable callable returning an nn.Module; it gets
                                    the model's options as keywords, and `num_classes` and
                                    `input_shape` where its signature names them
    timm:NAME                       timm.create_model(NAME, pretrained=False, ...)
    torchvision:NAME                torchvision.models.get_model(NAME, weights=None, ...)

Nothing is downloaded: random init, or the user's weights (plato.models.weights). Where timm or
torchvision cannot be imported (a CPU build of torch with the registry's torchvision wheels,
for one) the shorthand fails with one line saying why and what to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable

from torch import nn

from plato.errors import ModelError, PlatoError

PREFIXES = ("python:", "timm:", "torchvision:")
SHAPE_ARGS = ("num_classes", "input_shape")


def is_external(name: str) -> bool:
    return name.startswith(PREFIXES)


def _import(module: str, why: str):
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a library that breaks on import
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{why} needs the module '{module}', which cannot be imported here "
                         f"({type(e).__name__}: {first}): {_install_hint(module.split('.')[0])}"
                         ) from None


def _install_hint(module: str) -> str:
    if module in ("timm", "torchvision"):  # the registry's wheels link its CUDA torch
        return ("install torch, torchvision and timm from one index (pip install "
                "'plato[vision]' where torch is the registry's build; on a CPU-only machine "
                "with a CPU torch, a separate environment with torch==2.14.1 "
                "torchvision==0.29.1 timm, as `make test-vision` builds)")
    return "put it on PYTHONPATH or install its package"


def factory(name: str) -> tuple[Callable[..., nn.Module], bool]:
    """The callable behind an external name, and whether it takes the shape arguments
    itself (a `python:` factory that names them) rather than as library keywords."""
    kind, _, rest = name.partition(":")
    if kind == "python":
        module, sep, attr = rest.rpartition(":")
        if not sep or not module or not attr:
            raise ModelError(f"'{name}' is not python:package.module:factory")
        found = getattr(_import(module, name), attr, None)
        if not callable(found):
            raise ModelError(f"module '{module}' has no callable '{attr}' ({name})")
        return found, False
    if kind == "timm":
        timm = _import("timm", name)
        if rest not in timm.list_models():
            raise ModelError(f"timm has no model '{rest}'{_close(rest, timm.list_models())}")
        return (lambda **kw: timm.create_model(rest, pretrained=False, **kw)), True
    models = _import("torchvision.models", name)
    if rest not in models.list_models():
        raise ModelError(f"torchvision has no model '{rest}'{_close(rest, models.list_models())}")
    return (lambda **kw: models.get_model(rest, weights=None, **kw)), True


def _close(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5)
    return f"; close: {', '.join(close)}" if close else ""


def options_of(name: str) -> tuple[list[str], bool]:
    """The options an external model names, and whether it takes any others (**kwargs)."""
    built, library = factory(name)
    if library:
        return [], True
    params = inspect.signature(built).parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in SHAPE_ARGS]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


# The keyword a library's models take their input size by, where they need one (ViTs: their
# position embeddings are sized for it); models without one run at any size.
SIZE_KEYWORD = {"timm": "img_size", "torchvision": "image_size"}


def build(name: str, num_classes: int, input_shape: tuple[int, int, int],
          **options) -> nn.Module:
    """The model `name` for `num_classes` classes and inputs of `input_shape` (C, H, W): timm
    gets the channels (`in_chans`); timm and torchvision ViTs get the size (built for the
    data's size, not the 224 they default to); torchvision, whose models take 3 channels only,
    refuses other inputs in one line."""
    built, library = factory(name)
    kind = name.partition(":")[0]
    if not library:
        wanted = inspect.signature(built).parameters
        keywords = {**options, **{k: v for k, v in (("num_classes", num_classes),
                                                       ("input_shape", tuple(input_shape)))
                                  if k in wanted}}
        return _call(name, built, keywords)
    if kind == "torchvision" and input_shape[0] != 3:
        raise ModelError(f"{name} takes 3-channel images and this input has {input_shape[0]} "
                         f"channel(s) ({tuple(input_shape)}): use a dataset of colour images, "
                         "or a timm model (built for any number of channels) or a python: "
                         "factory")
    keywords = {"num_classes": num_classes, **options}
    if kind == "timm":
        keywords.setdefault("in_chans", input_shape[0])
    size = SIZE_KEYWORD[kind]
    if size in options:
        return _call(name, built, keywords)
    height, width = input_shape[1:]
    try:  # the models that have no size keyword refuse it: they are built without it
        return _call(name, built, {**keywords, size: height if height == width else
                                   (height, width)}, raise_type_error=True)
    except TypeError as e:
        if size not in str(e):
            raise ModelError(f"{name} refused its options {sorted(keywords)}: {e}") from None
    return _call(name, built, keywords)


def _call(name: str, built: Callable[..., nn.Module], keywords: dict,
          raise_type_error: bool = False) -> nn.Module:
    try:
        model = built(**keywords)
    except TypeError as e:
        if raise_type_error:
            raise
        raise ModelError(f"{name} refused its options {sorted(keywords)}: {e}") from None
    except PlatoError:
        raise
    except (Exception, SystemExit) as e:  # the factory's own failure: one line, no traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else "(no message)"
        raise ModelError(f"{name} raised {type(e).__name__} building the model: {first}"
                         ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model
