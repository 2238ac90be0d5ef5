"""VGG in the zoo: VGG's layers, cut points after every stage, pool and hidden layer, trained
and stitched like the ResNets."""

import pytest
import torch
from torch import nn

import plato
from plato.errors import ModelError
from plato.stitch import StitchConfig, stitch_networks
from plato.train import Recipe, train
from tests.helpers import run_plato


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("depth, layers", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_the_four_depths_have_vggs_layers(depth, layers):
    model = plato.create_model(f"vgg{depth}")
    found = convs(model)
    assert len(found) == layers  # + 3 linear layers: VGG-11/13/16/19
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3
    assert [c.out_channels for c in found][-1] == 512 and found[0].out_channels == 64
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == layers


def test_without_batchnorm_the_convs_carry_biases():
    model = plato.create_model("vgg11", batchnorm=False, width=8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(c.bias is not None for c in convs(model))


def test_cut_points_follow_stages_pools_and_hidden_layers():
    names = [p.name for p in plato.cut_points(plato.create_model("vgg16", width=8))]
    assert names == [f"{kind}{k}" for k in range(1, 6) for kind in ("stage", "pool")] + [
        "fc1", "fc2"]
    # an 8 px image is pooled three times, down to 1 x 1
    small = plato.cut_points(plato.create_model("vgg11", width=8, input_shape=(1, 8, 8)))
    assert [p.name for p in small] == ["stage1", "pool1", "stage2", "pool2", "stage3", "pool3",
                                       "stage4", "stage5", "fc1", "fc2"]
    assert small[5].shape == (32, 1, 1) and small[-1].shape == (64,)  # hidden: 8 x width


def test_bad_options_are_named():
    with pytest.raises(ModelError, match="dropout"):
        plato.create_model("vgg11", dropout=1.0)
    with pytest.raises(ModelError, match="no option depth"):
        plato.create_model("vgg11", depth=3)
    with pytest.raises(ModelError, match="unknown model 'vgg12'"):
        plato.create_model("vgg12")


def test_a_vgg_trains_and_stitches_like_a_resnet(digits, digits_resnet):
    torch.manual_seed(0)
    vgg = plato.create_model("vgg11", width=8, dropout=0.0, num_classes=10,
                             input_shape=digits.input_shape)
    result = train(vgg, digits, Recipe(epochs=8, batch_size=64, device="cpu"), progress=False)
    assert result.test_accuracy > 0.8
    config = StitchConfig.fast(device="cpu")
    into_resnet, _ = stitch_networks(vgg.eval(), digits_resnet, "pool2", "layer2.0", digits,
                                     config=config)
    from_resnet, _ = stitch_networks(digits_resnet, vgg, "layer2.0", "stage3", digits,
                                     config=config)
    assert into_resnet.stitched_accuracy > 0.8 and from_resnet.stitched_accuracy > 0.8


@pytest.mark.slow
def test_a_spec_and_the_cli_take_the_models_own_options(tmp_path):
    from plato.errors import SpecError
    from plato.sweep.networks import architectures
    from plato.sweep.spec import parse_spec

    raw = {"name": "v", "networks": {"v": {"train": {"model": "vgg11", "width": 8,
                                                     "batchnorm": False, "epochs": 1}}}}
    spec = parse_spec(raw)
    built = architectures(spec, plato.load_dataset("digits"))["v"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in built.modules())
    raw["networks"]["v"]["train"]["depth"] = 3
    with pytest.raises(SpecError, match=r"networks\.v\.train\.depth.*width, batchnorm, "
                                        r"hidden, dropout"):
        parse_spec(raw)
    out = tmp_path / "v.ckpt"
    run_plato("train", "vgg11", "--dataset", "digits", "--width", "4", "--option", "hidden=16",
              "--option", "dropout=0", "--epochs", "1", "--out", str(out), "--quiet", ok=True)
    from plato.checkpoint import load_checkpoint

    assert load_checkpoint(out).meta["config"]["hidden"] == 16
