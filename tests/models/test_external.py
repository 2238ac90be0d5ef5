"""Models from outside the zoo by name (python:, timm:, torchvision:) and a user's weights."""

import importlib.util
import json

import pytest
import torch

import plato
from plato.checkpoint import load_checkpoint, save_checkpoint
from plato.errors import ModelError
from plato.models import cut_graph, model_options
from plato.stitch import StitchConfig, stitch_networks
from plato.train import Recipe, train
from tests.helpers import run_plato

SMALL = "python:tests.models.factories:small_cnn"


def test_a_python_factory_is_a_model_like_any_other(digits, digits_resnet):
    assert model_options(SMALL) == ["width"]
    torch.manual_seed(0)
    net = plato.create_model(SMALL, width=8, num_classes=10, input_shape=digits.input_shape)
    assert [p.name for p in cut_graph(net).points()] == ["conv1", "conv2", "pool"]
    result = train(net, digits, Recipe(epochs=20, batch_size=64, device="cpu"), progress=False)
    assert result.test_accuracy > 0.8
    stitched, _ = stitch_networks(net.eval(), digits_resnet, "conv2", "layer2.0", digits,
                                  config=StitchConfig.fast(device="cpu"))
    assert stitched.stitched_accuracy > 0.8


def test_its_checkpoint_builds_it_again(tmp_path, digits):
    net = plato.create_model(SMALL, width=4, input_shape=digits.input_shape).eval()
    saved = save_checkpoint(tmp_path / "n.ckpt", net, dataset="digits")
    loaded = load_checkpoint(saved.path)
    assert loaded.meta["model"] == SMALL and loaded.meta["config"]["width"] == 4
    x = torch.randn(3, *digits.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))


@pytest.mark.parametrize("name, message", [
    ("python:tests.models.nope:f", "cannot be imported here.*PYTHONPATH"),
    ("python:tests.models.factories:nope", "has no callable 'nope'"),
    ("python:tests.models.factories:not_a_model", "returned dict, not a torch.nn.Module"),
    ("python:nocolon", "is not python:package.module:factory"),
])
def test_a_factory_that_cannot_build_says_why(name, message):
    with pytest.raises(ModelError, match=message):
        plato.create_model(name)


def test_unknown_options_are_refused_unless_the_factory_takes_any():
    with pytest.raises(ModelError, match="has no option depth: its options are width"):
        plato.create_model(SMALL, depth=3)
    plato.create_model("python:tests.models.factories:any_options", depth=3)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_a_library_shorthand_fails_in_one_line_where_it_cannot_import(library):
    try:
        importlib.import_module(library)
        pytest.skip(f"{library} imports here: the shorthand is tested in "
                    "test_vision_libraries.py")
    except Exception:
        pass
    with pytest.raises(ModelError, match=f"needs the module '{library}.*torchvision==0.29.1"):
        plato.create_model(f"{library}:resnet18")


@pytest.mark.slow
def test_plato_import_makes_a_checkpoint_of_a_users_weights(tmp_path, digits):
    torch.manual_seed(1)
    net = plato.create_model(SMALL, width=8, input_shape=digits.input_shape)
    train(net, digits, Recipe(epochs=20, batch_size=64, device="cpu"), progress=False)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    out = json.loads(run_plato("import", SMALL, "--weights", str(tmp_path / "mine.pt"),
                               "--option", "width=8", "--dataset", "digits", "--out",
                               str(tmp_path / "mine.ckpt"), "--json", ok=True).stdout)
    assert out["test_accuracy"] > 0.7
    assert load_checkpoint(tmp_path / "mine.ckpt").meta["model"] == SMALL
    failed = run_plato("import", SMALL, "--weights", str(tmp_path / "mine.pt"), "--dataset",
                       "digits", "--option", "width=4", "--out", str(tmp_path / "x.ckpt"),
                       ok=False)  # weights of the width-8 network
    assert "has shape" in failed.stderr and "Traceback" not in failed.stderr
