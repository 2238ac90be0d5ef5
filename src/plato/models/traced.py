"""Cut points by torch.fx: the model is traced, and a node of the graph is a cut point when its
value is a tensor and nothing computed before it is used after it (inside a residual block two
tensors are live, so the block's inside is not a cut point; without skip connections every
layer is). Any module that torch.fx can trace gets this treatment; the others get forward hooks
(plato.models.hooks), chosen by plato.models.graph.cut_graph.
"""

from __future__ import annotations

import contextlib
import inspect
import io

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from plato.errors import ModelError
from plato.models.cuts import GRANULARITIES, CutGraph, CutPoint, block_paths
from plato.models.fits import cannot_run
from plato.models.inputs import INPUT_MODULE, own_input
from plato.models.tokens import layout_of


def _scope(node: fx.Node) -> str:
    """The path of the module a node runs in ('' at top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack)) if stack else ""


def _inside(node: fx.Node, module: str) -> bool:
    """Whether a node runs in `module` or in one of its submodules."""
    scope = _scope(node)
    return scope == module or scope.startswith(module + ".")


def _op_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    fn = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "op")
    scope = _scope(node)
    return f"{scope}.{fn}" if scope else str(fn)


def trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx's graph of `model`, its forward's arguments after the input fixed at their
    defaults (timm's `forward(x, attn_mask=None, is_causal=False)`): traced as inputs, they
    would flow into every block, and no block's output would carry the whole state alone."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    fixed = {p.name: p.default for p in params if p.default is not p.empty
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    traced = fx.symbolic_trace(model, concrete_args=fixed or None)
    adapter = own_input(model)
    if adapter is not None:  # fx ignores the root's pre-hook: the renormalisation goes first
        traced.add_submodule(INPUT_MODULE, adapter)
        graph = traced.graph
        x = next(n for n in graph.nodes if n.op == "placeholder")
        with graph.inserting_after(x):
            renormalised = graph.call_module(INPUT_MODULE, (x,))
        x.replace_all_uses_with(renormalised, delete_user_cb=lambda user: user is not
                                renormalised)
        traced.recompile()
    return traced


class TracedCutGraph(CutGraph):
    """A model traced once by torch.fx, with its cut points and exact splits at any of them."""

    mechanism = "torch.fx"

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None,
                 traced: fx.GraphModule | None = None) -> None:
        super().__init__(model, input_shape)
        self.traced = traced if traced is not None else trace(model)
        self.nodes = list(self.traced.graph.nodes)
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self._propagate_shapes()
        self._valid = self._single_tensor_cuts()
        self._points = {g: self._make_points(g) for g in GRANULARITIES}
        # Splits are reused (a grid builds one model per cell); they share the parameters.
        self._splits: dict[str, tuple[fx.GraphModule, fx.GraphModule]] = {}

    # -- analysis ---------------------------------------------------------------------------

    def _propagate_shapes(self) -> None:
        was_training = self.model.training
        self.model.eval()  # BatchNorm in train mode cannot run a batch of one
        try:  # ShapeProp prints the traceback of a failing node: the error says it all
            device = next(self.model.parameters(), torch.empty(0)).device
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(self.traced).propagate(torch.zeros(1, *self.input_shape, device=device))
        except Exception as e:
            cause = e.__cause__ or e  # ShapeProp wraps the node's own error
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise cannot_run(self.model, self.input_shape,
                             f"{type(cause).__name__}: {first}") from None
        finally:
            self.model.train(was_training)

    def _single_tensor_cuts(self) -> set[fx.Node]:
        """Nodes whose value alone carries the whole state of the computation."""
        last_use = {
            n: max((self.position[u] for u in n.users), default=self.position[n])
            for n in self.nodes
        }
        valid, live_until = set(), -1  # the furthest use of anything before position k
        for k, node in enumerate(self.nodes):
            meta = node.meta.get("tensor_meta")
            if (node.op in ("call_module", "call_function", "call_method")
                    and isinstance(meta, torch.fx.passes.shape_prop.TensorMetadata)
                    and live_until <= k):
                valid.add(node)
            if node.op != "get_attr":  # constants can be fetched again by the suffix
                live_until = max(live_until, last_use[node])
        return valid

    def _block_output(self, block: str) -> fx.Node:
        inside = [n for n in self.nodes if _inside(n, block)]
        if not inside:
            raise ModelError(f"cut block '{block}' is not a module of {type(self.model).__name__}")
        return inside[-1]

    def _make_points(self, granularity: str) -> list[CutPoint]:
        blocks = getattr(self.model, "cut_blocks", None)
        if blocks:
            named = {self._block_output(b): b for b in blocks}
        else:  # a user model: the outputs of its blocks (block_paths), classifier excluded
            paths = sorted(block_paths(self.model), key=len, reverse=True)  # deepest first
            tops = {}
            for n in self.nodes:
                if n not in self._valid:
                    continue
                block = next((p for p in paths if _inside(n, p)), None)
                if block:
                    tops[block] = n
            named = {n: name for name, n in tops.items() if n.users and
                     not any(u.op == "output" for u in n.users)}
        for node, name in named.items():
            if node not in self._valid:
                raise ModelError(f"'{name}' is not a single-tensor cut point of this model")
        block_nodes = sorted(named, key=self.position.__getitem__)
        if granularity == "block":
            chosen = block_nodes
        else:
            first, last = self.position[block_nodes[0]], self.position[block_nodes[-1]]
            chosen = [n for n in self.nodes if n in self._valid
                      and first <= self.position[n] <= last]
        points, seen = [], {}
        for i, node in enumerate(chosen):
            name = named.get(node) or _op_name(node)
            if name in seen:  # a module called twice: number the later calls
                seen[name] += 1
                name = f"{name}:{seen[name]}"
            else:
                seen[name] = 0
            shape = tuple(node.meta["tensor_meta"].shape[1:])
            points.append(CutPoint(name, i, shape, node.name, layout_of(self.model, shape)))
        return points

    # -- surgery ----------------------------------------------------------------------------

    def _node(self, point: CutPoint) -> fx.Node:
        return next(n for n in self.nodes if n.name == point.node)

    def split(self, point: str | int | CutPoint,
              granularity: str = "block") -> tuple[fx.GraphModule, fx.GraphModule]:
        """(prefix, suffix) with suffix(prefix(x)) == model(x), bit for bit.

        The same point gives the same two modules each time (they hold no state of their own).
        """
        cut = self._node(self.point(point, granularity))
        if cut.name not in self._splits:
            self._splits[cut.name] = self._split(cut)
        return self._splits[cut.name]

    def _split(self, cut: fx.Node) -> tuple[fx.GraphModule, fx.GraphModule]:
        k = self.position[cut]

        prefix_graph, env = fx.Graph(), {}
        for node in self.nodes[: k + 1]:
            env[node] = prefix_graph.node_copy(node, env.__getitem__)
        prefix_graph.output(env[cut])

        suffix_graph, env = fx.Graph(), {}
        env[cut] = suffix_graph.placeholder("activation")
        for node in self.nodes[k + 1 :]:
            for arg in node.all_input_nodes:  # constants from before the cut, fetched again
                if arg not in env and arg.op == "get_attr":
                    env[arg] = suffix_graph.node_copy(arg, env.__getitem__)
            env[node] = suffix_graph.node_copy(node, env.__getitem__)
        return (fx.GraphModule(self.traced, prefix_graph, "Prefix"),
                fx.GraphModule(self.traced, suffix_graph, "Suffix"))

    def extract(self, points: list[str | int | CutPoint],
                granularity: str = "block") -> fx.GraphModule:
        """A module returning {point name: activation} for several points from one forward
        pass (the graph stops at the deepest of them)."""
        chosen = {p.name: p for p in (self.point(p, granularity) for p in points)}
        cuts = {name: self._node(p) for name, p in chosen.items()}
        last = max(self.position[c] for c in cuts.values())
        graph, env = fx.Graph(), {}
        for node in self.nodes[: last + 1]:
            env[node] = graph.node_copy(node, env.__getitem__)
        graph.output({name: env[c] for name, c in cuts.items()})
        return fx.GraphModule(self.traced, graph, "Extractor")

    def tapped(self, points: list[str | int | CutPoint],
               granularity: str = "block") -> fx.GraphModule:
        """The whole model, returning (its output, {point name: activation}) from one
        forward pass: to train on activations and output together (it shares the model's
        parameters)."""
        chosen = {p.name: self._node(p) for p in (self.point(p, granularity) for p in points)}
        graph, env = fx.Graph(), {}
        for node in self.nodes:
            if node.op == "output":
                output = fx.map_arg(node.args[0], env.__getitem__)
                graph.output((output, {name: env[c] for name, c in chosen.items()}))
            else:
                env[node] = graph.node_copy(node, env.__getitem__)
        return fx.GraphModule(self.traced, graph, "Tapped")


