"""BatchNorm folding: the same function as the frozen suffix, fewer layers, the original intact."""

import pytest
import torch
from torch import nn

from plato.models import cut_graph
from plato.models.fusion import fold_batchnorm
from tests.models.test_cuts import build, every_model


def _norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in module.modules())


@pytest.mark.parametrize("name", every_model())
def test_folded_suffix_computes_the_same_and_leaves_the_network_alone(name):
    model = build(name)
    with torch.no_grad():  # non-trivial affine parameters too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = cut_graph(model)
    x = torch.randn(4, *model.input_shape)
    with torch.no_grad():
        for point in graph.points():
            prefix, suffix = graph.split(point)
            act = prefix(x)
            folded = fold_batchnorm(suffix)
            expected, got = suffix(act), folded(act)
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max()), \
                (name, point.name)
            assert _norms(folded) <= _norms(suffix)
            if name.startswith("resnet"):  # every BatchNorm of a ResNet follows a conv
                assert _norms(folded) == 0, (name, point.name)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class SharedOutput(nn.Module):
    """A conv whose output feeds its BatchNorm and a skip: folding it would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        h = self.conv(x)
        return self.bn2(self.conv2(self.bn(h) + h))


def test_a_conv_used_twice_keeps_its_batchnorm():
    model = SharedOutput().eval()
    with torch.no_grad():
        for bn in (model.bn, model.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    traced = torch.fx.symbolic_trace(model)
    folded = fold_batchnorm(traced)
    assert isinstance(folded.get_submodule("bn"), nn.BatchNorm2d)  # kept
    assert not hasattr(folded, "bn2")  # folded into conv2
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_suffixes_of_one_network_share_their_layers():
    """No copies: unfused layers are the network's own, fused ones are shared between the
    suffixes given the same cache (memory of one network, not one per cut point)."""
    model = build("resnet-1111")
    graph = cut_graph(model)
    cache = {}
    early = fold_batchnorm(graph.split("layer1.0")[1], cache)
    late = fold_batchnorm(graph.split("layer3.0")[1], cache)
    early_storage = {p.data_ptr() for p in early.parameters()}
    assert {p.data_ptr() for p in late.parameters()} <= early_storage
    assert model.fc.weight.data_ptr() in early_storage  # the network's own head, not a copy
    own = {p.data_ptr() for p in model.parameters()}
    assert not any(p.requires_grad for p in early.parameters() if p.data_ptr() not in own)


def test_fused_layers_in_bf16_compute_what_bf16_autocast_computes():
    """Under bf16 autocast, fused layers stored in bf16 skip the per-call weight casts: the same
    outputs and input gradients, bit for bit, as the fp32 fused layers cast by autocast."""
    model = build("resnet-1111")
    prefix, suffix = cut_graph(model).split("layer1.0")
    act = prefix(torch.randn(4, *model.input_shape))
    results = []
    for dtype in (None, torch.bfloat16):
        folded = fold_batchnorm(suffix, {}, dtype)
        assert {p.dtype for p in folded.parameters() if not p.requires_grad} >= (
            {torch.bfloat16} if dtype else {torch.float32})
        x = act.detach().clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = folded(x)
        out.float().sum().backward()
        results.append((out.float(), x.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the network untouched
