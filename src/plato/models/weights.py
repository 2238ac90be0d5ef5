"""A user's trained weights, from the files people keep them in (`plato import --weights`):

    torchvision .pth, PyTorch .pt      a state dict (torch.save(model.state_dict()))
    timm / Hugging Face                model.safetensors, or pytorch_model.bin (a state dict)
    PyTorch Lightning .ckpt            its `state_dict`, the model's tensors under the name the
                                       LightningModule gave it: `prefix="model."`
    any dict that holds one            under `state_dict`, `model` or `model_state_dict`, or
                                       the key given (`key="ema.module"`: dots go deeper)

PyTorch files are read with torch.load(weights_only=True), never unpickled as objects, and onto
the CPU (a checkpoint saved on a GPU machine loads here). Names and shapes must match the
model's exactly; the first that does not is named, with the prefix to give where one would
make them match (DataParallel's `module.`, Lightning's `model.`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from plato.errors import ModelError

STATE_KEYS = ("state_dict", "model", "model_state_dict")  # where a dict usually holds one


def read_state(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: the file's own, or the one under `key` (dotted for
    nesting) or under a usual key."""
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
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"cannot read weights from {path} ({type(e).__name__}: {first}): "
                         "give a safetensors file or a state dict saved with torch.save"
                         ) from None
    if key is not None:
        for part in key.split("."):
            if not isinstance(state, dict) or part not in state:
                held = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
                raise ModelError(f"{path} has no '{part}' (of --key {key}); it holds {held}")
            state = state[part]
    elif isinstance(state, dict) and not _tensors(state):
        state = next((state[k] for k in STATE_KEYS if isinstance(state.get(k), dict)), state)
    if not isinstance(state, dict) or not _tensors(state):
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ModelError(f"{path} holds no state dict of tensors where it was looked for (it "
                         f"holds {keys}): name the key that holds one (--key)")
    return state


def _tensors(state: dict) -> bool:
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def load_weights(model: nn.Module, path: str | Path, prefix: str | None = None,
                 key: str | None = None) -> None:
    """A user's trained weights into `model` (the formats: the module docstring). `prefix`:
    the name the model's tensors have in the file before their own (only those are read);
    `key`: where in the file's dict the state dict is."""
    state = read_state(path, key)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ModelError(f"{path} has no tensor named {prefix}...: check --prefix")
    own = model.state_dict()
    for name, value in own.items():
        if name not in state:
            raise ModelError(f"{path} has no tensor '{name}' of the model (it holds "
                             f"{len(state)} tensors){_prefix_hint(name, state)}")
        if tuple(state[name].shape) != tuple(value.shape):
            hint = ("weights for another input size? (give --input-size, e.g. 224)"
                    if "pos_emb" in name else "weights of another model?")  # a ViT's tokens
            raise ModelError(f"{path}: tensor '{name}' has shape {tuple(state[name].shape)}, "
                             f"the model's has {tuple(value.shape)}: {hint}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ModelError(f"{path} holds tensors the model does not have, first '{extra[0]}' "
                         f"({len(extra)} in all): weights of another model? (--prefix reads "
                         "only the tensors under one name)")
    model.load_state_dict(state, strict=True)


def _prefix_hint(name: str, state: dict) -> str:
    """What to do where the model's tensor is in the file under a longer name."""
    longer = sorted(k for k in state if k.endswith("." + name))
    if longer:
        return f": it has '{longer[0]}'; give --prefix {longer[0][:-len(name)]}"
    return ": weights of another model?"
