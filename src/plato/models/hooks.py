"""Cut points of models torch.fx cannot trace (data-dependent control flow, some timm and
DINO ViTs), through forward hooks on their modules (plato.models.graph.cut_graph chooses them
where tracing fails).

How the candidates are chosen: one forward pass of a probe input records, in the order they
run, the modules whose output is one tensor with the batch dimension and which run exactly
once. How each is verified to be a cut point: with x1 and x2 two random inputs, the model run
on x1 with that module's output replaced (by a hook) by its output on x2 must give the
model's output on x2 exactly, in eval mode. Then nothing the model computes before the module
is used after it, except through its output: the module's output carries the whole state of
the computation, which is what a cut point is. A module that fails (a skip connection around
it, or an output the model does not use) is not a point, and naming it says why.

The contract, and where it differs from torch.fx's splits:
- prefix(x) runs the model until the module's output and stops there (an exception raised by
  the hook): the same value as the traced prefix would give.
- suffix(a) runs the whole model on a zero input with the module's output replaced by `a`:
  bit for bit the model's output for a verified point (that is what was verified), but the
  part before the point runs again on zeros each time (a fallback costs a prefix's work).
- extract(points) runs the model once with a hook at each point.
Block-level points are the model's `cut_blocks` where it names them, else the outputs of its
blocks (plato.models.cuts.block_paths) that are cut points; "layer" adds every verified module
in between.
"""

from __future__ import annotations

import torch
from torch import nn

from plato.errors import ModelError
from plato.models.cuts import CutGraph, CutPoint, block_paths
from plato.models.fits import cannot_run
from plato.models.inputs import INPUT_MODULE
from plato.models.tokens import layout_of


class _Stop(Exception):
    """Raised by a hook to end a forward pass at the cut point."""


def _is_activation(out, batch: int) -> bool:
    return isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[0] == batch


class _Capture:
    """Forward hooks that keep (and optionally stop at, or replace) module outputs."""

    def __init__(self, model: nn.Module, names: list[str], stop: str | None = None,
                 replace: dict[str, torch.Tensor] | None = None) -> None:
        self.model, self.names, self.stop = model, names, stop
        self.replace = replace or {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.order: list[str] = []
        self.calls: dict[str, int] = {}
        self.handles = []

    def __enter__(self) -> _Capture:
        modules = dict(self.model.named_modules())
        for name in self.names:
            self.handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook(self, name: str):
        def hook(module, args, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.replace:
                output = self.replace[name]
            if name not in self.outputs:
                self.order.append(name)
            self.outputs[name] = output
            if name == self.stop:
                raise _Stop
            return output if name in self.replace else None
        return hook

    def run(self, x: torch.Tensor):
        try:
            return self.model(x)
        except _Stop:
            return None


class HookPrefix(nn.Module):
    """The model up to a module's output, by a hook that stops the forward pass there."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _Capture(self.model, [self.name], stop=self.name) as capture:
            capture.run(x)
        return capture.outputs[self.name]


class HookSuffix(nn.Module):
    """The model from a module's output on: the whole model on a zero input, the module's
    output replaced by the activation (exact for a verified cut point)."""

    def __init__(self, model: nn.Module, name: str, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.name, self.input_shape = model, name, tuple(input_shape)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters(), a).dtype  # the input the model takes
        zeros = torch.zeros(len(a), *self.input_shape, device=a.device, dtype=dtype)
        with _Capture(self.model, [self.name], replace={self.name: a}) as capture:
            return capture.run(zeros)


class HookExtractor(nn.Module):
    """{point name: activation} for several points from one hooked forward pass."""

    def __init__(self, model: nn.Module, modules: dict[str, str], last: str) -> None:
        super().__init__()
        self.model, self.modules_of, self.last = model, modules, last

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with _Capture(self.model, list(set(self.modules_of.values())),
                      stop=self.last) as capture:
            capture.run(x)
        return {point: capture.outputs[module] for point, module in self.modules_of.items()}


def verify(model: nn.Module, name: str, input_shape: tuple[int, ...]) -> str | None:
    """None if the output of module `name` is a cut point of `model`, else why not."""
    g = torch.Generator().manual_seed(0)
    device = next(model.parameters(), torch.empty(0)).device
    x1, x2 = (torch.randn(2, *input_shape, generator=g).to(device) for _ in range(2))
    with torch.no_grad():
        with _Capture(model, [name]) as capture:
            expected = capture.run(x2)
        if capture.calls.get(name) != 1:
            return f"it runs {capture.calls.get(name, 0)} times in a forward pass, not once"
        if not _is_activation(capture.outputs[name], 2):
            return "its output is not one tensor with the batch dimension"
        with _Capture(model, [name], replace={name: capture.outputs[name]}) as swapped:
            got = swapped.run(x1)
    if not torch.equal(got, expected):
        return ("the model's output does not depend on the input through it alone (a skip "
                "connection around it, or an output the model does not use)")
    return None


class HookCutGraph(CutGraph):
    """CutGraph's interface for a model torch.fx cannot trace: points, split and extract
    through forward hooks (the module docstring says how and where the contract differs)."""

    mechanism = "forward hooks"

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None,
                 fx_error: str = "") -> None:
        super().__init__(model, input_shape)
        self.fx_error = fx_error  # why torch.fx could not trace it
        was_training = model.training
        model.eval()
        try:
            self._points = self._find_points()
        finally:
            model.train(was_training)
        self._splits: dict[str, tuple[nn.Module, nn.Module]] = {}

    def _find_points(self) -> dict[str, list[CutPoint]]:
        # (the input's renormalisation, plato.models.inputs, is part of the input: no point)
        names = [n for n, _ in self.model.named_modules()
                 if n and n.split(".")[0] != INPUT_MODULE]
        device = next(self.model.parameters(), torch.empty(0)).device
        try:
            with torch.no_grad(), _Capture(self.model, names) as probe:
                output = probe.run(torch.zeros(2, *self.input_shape, device=device))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise cannot_run(self.model, self.input_shape,
                             f"{type(e).__name__}: {first}") from None
        seen: dict[int, str] = {}  # a tensor several nested modules return: its first module
        candidates = []
        for name in probe.order:
            out = probe.outputs[name]
            if probe.calls[name] != 1 or not _is_activation(out, 2) or out is output:
                continue
            if id(out) in seen:
                continue
            seen[id(out)] = name
            candidates.append(name)
        blocks = list(getattr(self.model, "cut_blocks", None) or [])
        for block in blocks:
            reason = verify(self.model, block, self.input_shape) if block in names else \
                "it is not a module of the model"
            if reason:
                raise ModelError(f"'{block}' is not a cut point of this model: {reason}")
        valid = [n for n in candidates if verify(self.model, n, self.input_shape) is None]
        if not blocks:  # the outputs of its blocks (block_paths) that are cut points
            # (a block whose output is an inner module's tensor was left out of `valid`)
            blocks = [t for t in block_paths(self.model) if t in valid or (
                any(n.startswith(t + ".") for n in valid)
                and verify(self.model, t, self.input_shape) is None)]
        if not blocks:
            raise ModelError(f"{type(self.model).__name__}: no module's output is a cut point "
                             "(every one is bypassed or runs more than once)")
        order = {name: i for i, name in enumerate(probe.order)}
        self._position = order
        # a block that shares its tensor with an inner module takes that module's place
        by_tensor = {id(probe.outputs[b]): b for b in blocks}
        layers = [by_tensor.get(id(probe.outputs[n]), n) for n in valid]
        layers = [n for n in dict.fromkeys(layers)
                  if order[blocks[0]] <= order.get(n, -1) <= order[blocks[-1]] or n in blocks]
        layers.sort(key=lambda n: order[n])
        blocks.sort(key=lambda n: order[n])

        def make(chosen: list[str]) -> list[CutPoint]:
            return [CutPoint(n, i, tuple(probe.outputs[n].shape[1:]), n,
                             layout_of(self.model, tuple(probe.outputs[n].shape[1:])))
                    for i, n in enumerate(chosen)]

        return {"block": make(blocks), "layer": make(layers)}

    def split(self, point: str | int | CutPoint,
              granularity: str = "block") -> tuple[nn.Module, nn.Module]:
        """(prefix, suffix) with suffix(prefix(x)) == model(x) for a verified point; the
        suffix runs the part before the point again, on zeros."""
        name = self.point(point, granularity).node
        if name not in self._splits:
            self._splits[name] = (HookPrefix(self.model, name),
                                  HookSuffix(self.model, name, self.input_shape))
        return self._splits[name]

    def tapped(self, points: list[str | int | CutPoint],
               granularity: str = "block") -> nn.Module:
        raise ModelError(f"{type(self.model).__name__} cannot be traced by torch.fx "
                         f"({self.fx_error}): its activations cannot be trained on")

    def extract(self, points: list[str | int | CutPoint],
                granularity: str = "block") -> nn.Module:
        chosen = [self.point(p, granularity) for p in points]
        deepest = max(chosen, key=lambda p: self._position[p.node])
        return HookExtractor(self.model, {p.name: p.node for p in chosen}, deepest.node)
