"""Folding eval-mode BatchNorm into the layer before it, for a frozen traced module.

A frozen network in eval mode computes `bn(conv(x))` as one affine map after the conv; folding
it into the conv's weight and bias gives the same function with one layer fewer per block (less
arithmetic on a CPU, one kernel launch fewer on a GPU; measured in BENCHMARKS.md, issue 6).
Equal up to rounding, not bit for bit, so only the training of stitches uses it: tables are
measured through the network as it is.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_PAIRS = ((nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
          (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval))


def fold_batchnorm(module: fx.GraphModule,
                   folded: dict[tuple[int, int], nn.Module] | None = None,
                   dtype: torch.dtype | None = None) -> fx.GraphModule:
    """`module` with every eval-mode BatchNorm fed only by a conv (or Linear) folded into a new
    copy of that layer; the other layers are the module's own (shared, not copied), and its
    parameters and buffers never change. `folded` caches the fused layers by (layer, norm):
    the suffixes of one network, passed the same dict, share them (memory: one network).
    `dtype` (bf16, for a module run under bf16 autocast) stores the fused layers in it: autocast
    would round their weights to it on every call; the arithmetic is the same."""
    folded = {} if folded is None else folded
    graph = fx.Graph()
    graph.output(graph.graph_copy(module.graph, {}))
    modules = dict(module.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    replaced: dict[str, nn.Module] = {}
    for node in list(graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (isinstance(source, fx.Node) and source.op == "call_module"
                and len(source.users) == 1 and calls[source.target] == 1
                and calls[node.target] == 1):
            continue  # a layer called twice, or whose output is used elsewhere, stays
        layer, norm = modules[source.target], modules[node.target]
        for layer_type, norm_type, fuse in _PAIRS:
            if type(layer) is layer_type and type(norm) is norm_type \
                    and norm.track_running_stats and not (layer.training or norm.training):
                key = (id(layer), id(norm))
                if key not in folded:  # frozen: its gradient would not reach the network
                    folded[key] = fuse(layer, norm).requires_grad_(False).to(dtype)
                replaced[str(source.target)] = folded[key]
                node.replace_all_uses_with(source)
                graph.erase_node(node)
                break
    root = {node.target: replaced.get(str(node.target), modules[node.target])
            if node.op == "call_module" else _attribute(module, node.target)
            for node in graph.nodes if node.op in ("call_module", "get_attr")}
    graph.lint()
    return fx.GraphModule(root, graph, type(module).__name__)


def _attribute(module: nn.Module, path: str):
    for name in path.split("."):
        module = getattr(module, name)
    return module
