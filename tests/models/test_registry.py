import pytest
import torch

import plato
from plato.errors import ModelError


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_list_models_wildcards():
    assert len(plato.list_models("resnet-*")) == 16
    assert plato.list_models("resnet-1111") == ["resnet-1111"]
    assert {"resnet18", "resnet34", "resnet50", "resnet9", "resnet20", "resnet110"} <= set(
        plato.list_models("resnet*"))
    assert plato.list_models("cnn-*") and plato.list_models("mlp-*")


def test_known_sizes():
    # The CIFAR variant of ResNet-18 (3x3 stem) has 11,173,962 parameters for 10 classes.
    assert n_params(plato.create_model("resnet18")) == 11_173_962
    assert n_params(plato.create_model("resnet-2222")) == 11_173_962
    assert n_params(plato.create_model("resnet34")) == 21_282_122
    assert n_params(plato.create_model("resnet9")) == 6_573_120


def test_resnet_family_block_counts():
    for name, blocks in (("resnet-1212", 6), ("resnet-3463", 16), ("resnet34", 16),
                         ("resnet20", 9), ("resnet110", 54)):
        points = plato.cut_points(plato.create_model(name))
        assert len(points) == blocks + 2, name  # stem + blocks + pool


def test_options_and_errors():
    m = plato.create_model("resnet-1111", width=8, num_classes=7, in_channels=1)
    assert m.stem[0].out_channels == 8 and m.fc.out_features == 7 and m.input_shape == (1, 32, 32)
    assert m.plato_config == {"num_classes": 7, "input_shape": [1, 32, 32], "width": 8}
    with pytest.raises(ModelError, match="unknown model 'resnet-12'"):
        plato.create_model("resnet-12")
    with pytest.raises(ModelError, match="has no option depth"):
        plato.create_model("resnet18", depth=3)
    with pytest.raises(ModelError, match="has no option width"):
        plato.create_model("mlp-64", width=3)
    with pytest.raises(ModelError, match="contradicts"):
        plato.create_model("cnn-3", in_channels=1, input_shape=(3, 8, 8))


def test_without_skip_connections():
    with_skip = plato.create_model("resnet-1111", width=8)
    plain = plato.create_model("resnet-1111", width=8, residual=False)
    assert not any("shortcut" in n for n, _ in plain.named_modules())
    assert any("shortcut" in n for n, _ in with_skip.named_modules())
    x = torch.randn(2, 3, 32, 32)
    assert plain.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["mlp-32x16", "cnn-3", "resnet9", "resnet20"])
def test_residual_variants_run(name):
    m = plato.create_model(name, residual=True, input_shape=(1, 12, 12))
    assert m.eval()(torch.randn(3, 1, 12, 12)).shape == (3, 10)
