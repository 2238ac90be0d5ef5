"""Models from outside the zoo, by name, wherever a zoo name is accepted:

    python:package.module:factory   any importable callable returning an nn.Module; it gets
                                    the model's options as keywords, and `num_classes` and
                                    `input_shape` where its signature names them
    timm:NAME                       timm.create_model(NAME, pretrained=False, ...)
    torchvision:NAME                torchvision.models.get_model(NAME, weights=None, ...)

Nothing is downloaded: random init, or the user's weights (`load_weights`). Where timm or
torchvision cannot be imported (a CPU build of torch with the registry's torchvision wheels,
for one) the shorthand fails with one line saying why and what to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from plato.errors import ModelError

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
    if module in ("timm", "torchvision"):
        return (f"install {module} built for this torch (pip install {module}; torchvision "
                "wheels must match the torch build, and timm needs torchvision)")
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


def build(name: str, num_classes: int, input_shape: tuple[int, int, int],
          **options) -> nn.Module:
    built, library = factory(name)
    if library:  # timm and torchvision take the classes and the input channels by keyword
        keywords = {"num_classes": num_classes, **options}
        if name.startswith("timm:"):
            keywords.setdefault("in_chans", input_shape[0])
    else:
        wanted = inspect.signature(built).parameters
        keywords = {**options, **{k: v for k, v in (("num_classes", num_classes),
                                                       ("input_shape", tuple(input_shape)))
                                  if k in wanted}}
    try:
        model = built(**keywords)
    except TypeError as e:
        raise ModelError(f"{name} refused its options {sorted(keywords)}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """A user's trained weights into `model`: a safetensors file, or a PyTorch file read with
    torch.load(weights_only=True) (a state dict, or a dict holding one under 'state_dict' or
    'model'; never an unpickled object). Names and shapes must match the model's exactly:
    the first that does not is named."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a weights file, or one that would need unpickling
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"cannot read weights from {path} ({type(e).__name__}: {first}): "
                         "give a safetensors file or a state dict saved with torch.save"
                         ) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelError(f"{path} holds no state dict of tensors")
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ModelError(f"{path} has no tensor '{key}' of the model (it holds "
                             f"{len(state)} tensors): weights of another model?")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(f"{path}: tensor '{key}' has shape {tuple(state[key].shape)}, the "
                             f"model's has {tuple(value.shape)}: weights of another model?")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ModelError(f"{path} holds tensors the model does not have, first '{extra[0]}' "
                         f"({len(extra)} in all): weights of another model?")
    model.load_state_dict(state, strict=True)
