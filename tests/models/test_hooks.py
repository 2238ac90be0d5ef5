"""The forward-hook fallback for models torch.fx cannot trace (plato.models.hooks)."""

import pytest
import torch

import plato
from plato.errors import ModelError
from plato.models import cut_graph
from plato.stitch import StitchConfig, StitchedModel, stitch_networks
from plato.train import Recipe, train
from tests.helpers import run_plato

UNTRACEABLE = "python:tests.models.factories:untraceable"


def model(width=4, **kw):
    torch.manual_seed(0)
    return plato.create_model(UNTRACEABLE, width=width, input_shape=(1, 8, 8), **kw).eval()


def test_a_model_fx_refuses_gets_verified_hook_points():
    net = model()
    graph = cut_graph(net)
    assert graph.mechanism == "forward hooks" and "control flow" in graph.fx_error
    assert [p.name for p in graph.points()] == ["conv1", "conv3", "pool"]
    # conv2 has a skip connection around it: its output is not the whole state
    assert "conv2" not in [p.name for p in graph.points("layer")]
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        expected = net(x)
        for point in graph.points("layer"):
            prefix, suffix = graph.split(point, "layer")
            activation = prefix(x)
            assert tuple(activation.shape[1:]) == point.shape
            assert torch.equal(suffix(activation), expected), point.name
        both = graph.extract(["conv1", "pool"])(x)
        assert torch.equal(both["pool"], graph.split("pool")[0](x))


def test_a_module_that_is_no_cut_point_is_refused_with_the_reason():
    net = model()
    net.cut_blocks = ("conv1", "conv2", "pool")
    with pytest.raises(ModelError, match="'conv2' is not a cut point of this model: the "
                                         "model's output does not depend on the input through "
                                         "it alone"):
        cut_graph(net)


def test_its_identity_self_stitch_reproduces_the_model_and_it_stitches(digits, digits_resnet):
    torch.manual_seed(0)
    net = plato.create_model(UNTRACEABLE, width=8, input_shape=digits.input_shape)
    train(net, digits, Recipe(epochs=20, batch_size=64, device="cpu"), progress=False)
    net.eval()
    stitched = StitchedModel(net, "conv3", "conv1x1", net, "conv3")
    with torch.no_grad():
        stitched.stitch.map.weight.copy_(torch.eye(16).view(16, 16, 1, 1))
        stitched.stitch.map.bias.zero_()
        x = torch.randn(6, *digits.input_shape)
        assert torch.equal(stitched(x), net(x))
    into_resnet, _ = stitch_networks(net, digits_resnet, "conv3", "layer2.0", digits,
                                     config=StitchConfig.fast(device="cpu"))
    from_resnet, _ = stitch_networks(digits_resnet, net, "layer2.0", "conv3", digits,
                                     config=StitchConfig.fast(device="cpu"))
    assert into_resnet.stitched_accuracy > 0.8 and from_resnet.stitched_accuracy > 0.8


@pytest.mark.slow
def test_plato_models_says_which_mechanism():
    import json

    out = json.loads(run_plato("models", UNTRACEABLE, "--input-shape", "1,8,8",
                               "--json", ok=True).stdout)
    assert out["models"][0]["cut_points_by"] == "forward hooks"
    zoo = json.loads(run_plato("models", "cnn-2", "--json", ok=True).stdout)
    assert zoo["models"][0]["cut_points_by"] == "torch.fx"
