"""Narrowed models: a zoo model whose layers have fewer channels than its config builds
(structured pruning removed them). The weights' shapes, not the config, give the widths:
`narrow_to` cuts a freshly built model to them, so a checkpoint, a remote worker or a random
control can rebuild a channel-pruned network from its config and its tensors' shapes."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from plato.errors import ModelError


def shapes_of(tensors: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


def tensor_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return shapes_of(model.state_dict())


def narrowed_tensors(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The tensors of `model` whose shapes differ from `shapes`."""
    own = tensor_shapes(model)
    return [k for k, s in shapes.items() if k in own and own[k] != tuple(s)]


def narrow_to(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """Cut each parameter and buffer of `model` to its shape in `shapes` (the first entries
    of every dimension kept: a fresh initialisation stays one), and set the layers' width
    attributes (in/out_channels, in/out_features, num_features, normalized_shape) to match.
    In place; returns the model."""
    owners = {}
    for module_name, module in model.named_modules():
        for attr, tensor in [*module.named_parameters(recurse=False),
                             *module.named_buffers(recurse=False)]:
            owners[f"{module_name}.{attr}" if module_name else attr] = (module, attr, tensor)
    changed = {}
    for name in narrowed_tensors(model, shapes):
        module, attr, tensor = owners[name]
        shape = tuple(shapes[name])
        if len(shape) != tensor.ndim or any(
                s > o for s, o in zip(shape, tensor.shape, strict=True)):
            raise ModelError(f"'{name}' has shape {shape}, which is not a narrowing of the "
                             f"model's {tuple(tensor.shape)}")
        cut = tensor.detach()[tuple(slice(0, s) for s in shape)].clone()
        if isinstance(tensor, nn.Parameter):
            setattr(module, attr, nn.Parameter(cut, requires_grad=tensor.requires_grad))
        else:
            setattr(module, attr, cut)  # (an existing buffer name: stays a buffer)
        changed[id(module)] = module
    for module in changed.values():
        _fit_widths(module)
    return model


def _fit_widths(module: nn.Module) -> None:
    if isinstance(module, _ConvNd):
        module.out_channels = module.weight.shape[0]
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, _NormBase):
        source = module.weight if module.weight is not None else module.running_mean
        module.num_features = source.shape[0]
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        module.normalized_shape = tuple(module.weight.shape)
    else:
        raise ModelError(f"cannot narrow a {type(module).__name__}: only conv, linear and "
                         "normalisation layers change width")
