"""A network fed its own normalisation (plato.models.inputs): the model, its copies, pickles and
every split of its cut graph see the images renormalised, exactly once; its state dict is the
network's alone; and a network trained under one normalisation classifies as it did only when
fed it."""

import copy
import pickle

import pytest
import torch

import plato
from plato.errors import ModelError
from plato.models import cut_graph
from plato.models.hooks import HookCutGraph
from plato.models.inputs import InputAdapter, feed_own_input, own_input
from plato.train import Recipe, evaluate, train
from tests.helpers import one_line_error, plato_json, run_plato

DATA = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # a CIFAR-10 codebase's
OWN = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # ImageNet's


def network(name: str = "resnet-1111") -> torch.nn.Module:
    torch.manual_seed(0)
    net = plato.create_model(name, width=8).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_the_renormalisation_is_the_formula():
    adapter = InputAdapter(*DATA, *OWN)
    pixels = torch.rand(2, 3, 4, 4)  # images in [0, 1]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in DATA)
    own_mean, own_std = (torch.tensor(v).view(1, 3, 1, 1) for v in OWN)
    got = adapter((pixels - mean) / std)
    assert torch.allclose(got, (pixels - own_mean) / own_std, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet-1111", "python:tests.models.factories:small_cnn"])
def test_a_fed_model_and_every_split_of_it_see_the_renormalised_input(name):
    plain, fed = network(name), network(name)
    feed_own_input(fed, *DATA, *OWN)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = plain(own_input(fed)(x))
        assert torch.equal(fed(x), want) and not torch.equal(plain(x), want)
        assert torch.equal(copy.deepcopy(fed)(x), want)
        assert torch.equal(pickle.loads(pickle.dumps(fed))(x), want)  # a Ray payload
        for graph, plain_graph in ((cut_graph(fed), cut_graph(plain)),
                                   (HookCutGraph(fed, (3, 32, 32), fx_error="(hooks)"),
                                    HookCutGraph(plain, (3, 32, 32), fx_error="(hooks)"))):
            assert graph.mechanism == plain_graph.mechanism  # fx traces the fed model too
            assert [(p.name, p.shape) for p in graph.points("layer")] == \
                [(p.name, p.shape) for p in plain_graph.points("layer")]
            for granularity in ("block", "layer"):
                for point in graph.points(granularity):
                    prefix, suffix = graph.split(point, granularity)
                    assert torch.equal(suffix(prefix(x)), want), (graph.mechanism, point.name)
            names = [p.name for p in graph.points()]
            extracted = graph.extract(names)(x)
            plain_extracted = plain_graph.extract(names)(own_input(fed)(x))
            assert all(torch.equal(extracted[n], plain_extracted[n]) for n in names)
    assert fed.state_dict().keys() == plain.state_dict().keys()  # no renormalisation saved
    with pytest.raises(ModelError, match="already fed"):
        feed_own_input(fed, *DATA, *OWN)


@pytest.mark.slow
def test_a_network_trained_under_its_own_normalisation_needs_it(digits):
    """Trained on digits seen through a normalisation far from the data's, it classifies as it
    did only when fed that normalisation; fed the data's own (what Plato did with every
    imported network), it does not: the negative control."""
    own = ((0.8,), (0.05,))  # digits' pixels are mostly dark: this shifts them far off
    torch.manual_seed(0)
    trained = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape)
    feed_own_input(trained, digits.mean, digits.std, *own)
    train(trained, digits, Recipe(epochs=4, batch_size=64, device="cpu"), progress=False)
    accuracy = evaluate(trained.eval(), digits, device="cpu")["accuracy"]
    assert accuracy > 0.85
    weights = {k: v.clone() for k, v in trained.state_dict().items()}
    fed = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape)
    fed.load_state_dict(weights)
    feed_own_input(fed, digits.mean, digits.std, *own)
    assert evaluate(fed.eval(), digits, device="cpu")["accuracy"] == accuracy
    unfed = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape)
    unfed.load_state_dict(weights)
    assert evaluate(unfed.eval(), digits, device="cpu")["accuracy"] < accuracy - 0.3


@pytest.mark.slow
def test_plato_import_records_and_feeds_the_networks_normalisation(tmp_path, digits):
    """A network trained elsewhere under its own normalisation, imported as a user would:
    with `--mean/--std` it classifies as it did, `plato eval` agrees and says which
    normalisation, and its self-stitch recovers its accuracy (the sender's prefix gets its
    input); imported without (the dataset's, what Plato did before), it does not classify."""
    own = ((0.8,), (0.05,))
    torch.manual_seed(0)
    net = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape)
    feed_own_input(net, digits.mean, digits.std, *own)
    train(net, digits, Recipe(epochs=4, batch_size=64, device="cpu"), progress=False)
    accuracy = evaluate(net.eval(), digits, device="cpu")["accuracy"]
    torch.save(net.state_dict(), tmp_path / "theirs.pth")
    common = ["import", "resnet-1111", "--option", "width=8", "--dataset", "digits",
              "--weights", tmp_path / "theirs.pth", "--device", "cpu"]
    fed = plato_json(*common, "--mean", "0.8", "--std", "0.05", "--out", tmp_path / "fed.ckpt")
    assert fed["test_accuracy"] == accuracy and fed["normalisation"] == {"mean": [0.8],
                                                                         "std": [0.05]}
    plain = plato_json(*common, "--out", tmp_path / "plain.ckpt")
    assert plain["test_accuracy"] < accuracy - 0.3 and plain["normalisation"] is None
    evaluated = run_plato("eval", tmp_path / "fed.ckpt", "--device", "cpu", ok=True).stdout
    assert f"test accuracy {accuracy:.4f}" in evaluated
    assert "normalisation: its own (mean 0.8; std 0.05)" in evaluated
    stitched = plato_json("stitch", tmp_path / "fed.ckpt", tmp_path / "fed.ckpt", "--from",
                          "layer1.0", "--to", "layer1.0", "--device", "cpu")
    assert abs(stitched["stitched_accuracy"] - accuracy) <= 0.02, stitched
    bad = run_plato(*common, "--mean", "0.8,x", "--std", "0.05", "--out", tmp_path / "b.ckpt")
    assert "--mean takes numbers" in one_line_error(bad)


def test_a_sweeps_networks_carry_it(tmp_path, digits):
    """A checkpoint records the normalisation its model was fed; loaded for a dataset it is
    fed again; its random control poses with the same input (and is another control than an
    unfed network's); a remote worker's payload rebuilds it fed; the identity of its cells
    differs from the same weights fed the dataset's own."""
    from plato.checkpoint import load_checkpoint, save_checkpoint
    from plato.sweep.networks import Network, random_control

    torch.manual_seed(0)
    net = plato.create_model("resnet-1111", width=8, input_shape=digits.input_shape).eval()
    plain_ckpt = save_checkpoint(tmp_path / "plain.ckpt", net, dataset="digits")
    feed_own_input(net, digits.mean, digits.std, (0.8,), (0.05,))
    saved = save_checkpoint(tmp_path / "fed.ckpt", net, dataset="digits")
    assert saved.meta["input"] == {"mean": [0.8], "std": [0.05]}
    loaded = load_checkpoint(tmp_path / "fed.ckpt")
    assert own_input(loaded.model) is None  # fed when it meets a dataset
    model = loaded.for_dataset(digits)
    assert own_input(model).spec() == own_input(net).spec()
    assert loaded.content_hash != load_checkpoint(tmp_path / "plain.ckpt").content_hash
    x = torch.randn(2, *digits.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    control = random_control("n", loaded, 0, digits, torch.device("cpu"))
    assert own_input(control.model).spec() == own_input(net).spec()
    assert control.identity != random_control("n", load_checkpoint(plain_ckpt.path), 0,
                                               digits, torch.device("cpu")).identity
    remote = Network.from_payload(Network("n", "trained", model, "id", 0.5).payload())
    with torch.no_grad():
        assert torch.equal(remote.model(x), net(x))


def test_the_normalisation_asked_for_is_checked():
    from plato.models.inputs import PRESETS, chosen_normalisation

    net = network()
    assert chosen_normalisation(net, 3) is None  # a zoo model: the dataset's
    assert chosen_normalisation(net, 3, "imagenet") == PRESETS["imagenet"]
    for preset, mean, std, message in [("nope", None, None, "no normalisation 'nope'"),
                                       (None, [0.5], None, "give both --mean and --std"),
                                       ("imagenet", [0.5], [0.2], "not both")]:
        with pytest.raises(ModelError, match=message):
            chosen_normalisation(net, 3, preset, mean, std)
    with pytest.raises(ModelError, match="std must be positive"):
        feed_own_input(network(), *DATA, OWN[0], (0.2, 0.0, 0.2))
    with pytest.raises(ModelError, match="has 1 channels' mean"):
        feed_own_input(network(), *DATA, (0.5,), (0.2,))


@pytest.mark.parametrize("method", ["magnitude", "channels"])
def test_a_pruned_network_keeps_its_normalisation(tmp_path, method):
    """Pruning copies the network with what it is fed (the renormalisation has no weights to
    prune), and its checkpoint records it: at amount 0 the pruned network is the network."""
    from plato.checkpoint import load_checkpoint, save_checkpoint
    from plato.compress import PruneConfig, prune_network

    fed = network()
    feed_own_input(fed, *DATA, *OWN)
    x = torch.randn(2, 3, 32, 32)
    for amount in (0.0, 0.5):
        pruned = prune_network(fed, PruneConfig(method=method, amount=amount)).model.eval()
        assert own_input(pruned).spec() == own_input(fed).spec()
        with torch.no_grad():
            same = torch.equal(pruned(x), fed(x))
        assert same == (amount == 0.0), (method, amount)
        saved = save_checkpoint(tmp_path / f"{method}-{amount}.ckpt", pruned, dataset="x")
        assert saved.meta["input"] == {"mean": list(OWN[0]), "std": list(OWN[1])}
        assert load_checkpoint(saved.path).meta["input"] == saved.meta["input"]


@pytest.mark.slow
def test_a_sweep_feeds_each_network_its_own_normalisation(tmp_path, digits):
    """A sweep over a network trained under its own normalisation: its recorded accuracy is
    its own, its self-stitches recover it (the sender's prefix got its input), and its random
    control is another control than the same weights fed the dataset's; the same weights
    without the normalisation (the negative control) classify far worse in the same sweep."""
    from plato.checkpoint import save_checkpoint
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec
    from plato.sweep.store import Store
    from tests.sweep.conftest import write_spec

    torch.manual_seed(0)
    net = plato.create_model("resnet-1111", width=4, input_shape=digits.input_shape)
    feed_own_input(net, digits.mean, digits.std, (0.8,), (0.05,))
    train(net, digits, Recipe(epochs=4, batch_size=64, device="cpu"), progress=False)
    accuracy = evaluate(net.eval(), digits, device="cpu")["accuracy"]
    fed = save_checkpoint(tmp_path / "fed.ckpt", net, dataset="digits").path
    plain_net = plato.create_model("resnet-1111", width=4, input_shape=digits.input_shape)
    plain_net.load_state_dict(net.state_dict())
    plain = save_checkpoint(tmp_path / "plain.ckpt", plain_net, dataset="digits").path
    spec = load_spec(write_spec(tmp_path / "s.yaml", {"fed": fed, "plain": plain},
                                pairs=[["fed", "fed"]], points=["stem", "layer1.0", "layer2.0"]))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    with Store(summary.store) as store:
        networks = store.networks().set_index(["name", "role"])
        cells = store.cells()
    assert networks.loc[("fed", "trained"), "accuracy"] == accuracy
    assert networks.loc[("plain", "trained"), "accuracy"] < accuracy - 0.3
    assert networks.loc[("fed", "random"), "identity"] != \
        networks.loc[("plain", "random"), "identity"]
    diagonal = cells[(cells.control == "trained->trained")
                     & (cells.sender_point == cells.receiver_point)]
    assert len(diagonal) == 3
    assert (abs(diagonal.stitched_accuracy - accuracy) <= 0.02).all(), diagonal


def test_the_resize_is_the_stated_policy():
    """Scaled by the one factor that covers the target (bilinear, antialiased), then the centre
    cut out; a constant image stays constant (the weights sum to one), the resize commutes
    with the renormalisation, and an image already at the size passes untouched."""
    import torch.nn.functional as F

    from plato.models.inputs import resize

    x = torch.rand(2, 3, 40, 30)
    scaled = F.interpolate(x, size=(32, 24), mode="bilinear", antialias=True)  # 24/30 = 0.8
    assert torch.equal(resize(x, (24, 24)), scaled[..., 4:28, :])
    up = F.interpolate(x, size=(160, 120), mode="bilinear", antialias=True)  # 120/30 = 4
    assert torch.equal(resize(x, (100, 120)), up[..., 30:130, :])
    assert torch.allclose(resize(torch.full((1, 3, 7, 9), 0.3), (64, 64)),
                          torch.full((1, 3, 64, 64), 0.3))
    both = InputAdapter(*DATA, *OWN, size=(64, 64))
    assert torch.allclose(both(x), resize(InputAdapter(*DATA, *OWN)(x), (64, 64)), atol=1e-5)
    assert torch.allclose(both(x), InputAdapter(*DATA, *OWN)(resize(x, (64, 64))), atol=1e-5)
    only_size = InputAdapter(*DATA, size=(40, 30))
    assert torch.equal(only_size(x), x) and not only_size.renormalises
    with pytest.raises(ModelError, match="input size is"):
        InputAdapter(*DATA, size=(0, 3))


@pytest.mark.slow
def test_plato_import_feeds_a_network_at_its_own_size(tmp_path, digits):
    """A network trained on digits seen at 4x their size (32 x 32), imported with
    `--input-size 32`, classifies as it did (and eval, a self-stitch and its checkpoint's
    record agree); imported at the dataset's size (the negative control) it does not."""
    from plato.checkpoint import load_checkpoint

    torch.manual_seed(0)
    net = plato.create_model("resnet-1111", width=8, input_shape=(1, 32, 32))
    feed_own_input(net, digits.mean, digits.std, size=(32, 32))
    train(net, digits, Recipe(epochs=4, batch_size=64, device="cpu"), progress=False)
    accuracy = evaluate(net.eval(), digits, device="cpu")["accuracy"]
    assert accuracy > 0.85
    torch.save(net.state_dict(), tmp_path / "theirs.pth")
    common = ["import", "resnet-1111", "--option", "width=8", "--dataset", "digits",
              "--weights", tmp_path / "theirs.pth", "--device", "cpu"]
    sized = plato_json(*common, "--input-size", "32", "--out", tmp_path / "sized.ckpt")
    assert sized["test_accuracy"] == accuracy and sized["normalisation"] == {"size": [32, 32]}
    ckpt = load_checkpoint(tmp_path / "sized.ckpt")
    assert ckpt.meta["config"]["input_shape"] == [1, 32, 32]
    plain = plato_json(*common, "--out", tmp_path / "plain.ckpt")
    assert plain["test_accuracy"] < accuracy - 0.3, (plain, accuracy)
    evaluated = run_plato("eval", tmp_path / "sized.ckpt", "--device", "cpu", ok=True).stdout
    assert f"test accuracy {accuracy:.4f}" in evaluated
    assert "normalisation: the dataset's; images resized to 32x32" in evaluated
    stitched = plato_json("stitch", tmp_path / "sized.ckpt", tmp_path / "sized.ckpt",
                          "--from", "layer1.0", "--to", "layer1.0", "--device", "cpu")
    assert abs(stitched["stitched_accuracy"] - accuracy) <= 0.02, stitched
    for size in ("0", "a,b", "32,32,3", "99999"):
        bad = run_plato(*common, "--input-size", size, "--out", tmp_path / "b.ckpt")
        assert "--input-size takes HEIGHT,WIDTH" in one_line_error(bad)


def test_a_checkpoint_at_its_own_size_takes_any_size_of_its_channels(tmp_path, digits):
    """Saved with the size it is fed, a network takes the dataset at another size (resized),
    its random control and a remote worker's copy are fed the same, and a network without a
    size still refuses images of another size than it was built for."""
    from plato.checkpoint import load_checkpoint, save_checkpoint
    from plato.errors import CheckpointError
    from plato.sweep.networks import Network, random_control

    torch.manual_seed(0)
    net = plato.create_model("resnet-1111", width=8, input_shape=(1, 16, 16)).eval()
    feed_own_input(net, digits.mean, digits.std, (0.8,), (0.05,), size=(16, 16))
    saved = save_checkpoint(tmp_path / "sized.ckpt", net, dataset="digits")
    assert saved.meta["input"] == {"mean": [0.8], "std": [0.05], "size": [16, 16]}
    loaded = load_checkpoint(saved.path)
    model = loaded.for_dataset(digits)
    x = torch.randn(3, *digits.input_shape)  # (1, 8, 8): resized to 16 x 16 inside
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
        remote = Network.from_payload(Network("n", "trained", model, "id", 0.5).payload())
        assert torch.equal(remote.model(x), net(x))
    control = random_control("n", loaded, 0, digits, torch.device("cpu"))
    assert own_input(control.model).spec() == own_input(net).spec()
    unsized = plato.create_model("resnet-1111", width=8, input_shape=(1, 16, 16))
    save_checkpoint(tmp_path / "unsized.ckpt", unsized, dataset="digits")
    with pytest.raises(CheckpointError, match=r"of shape \(1, 16, 16\); digits"):
        load_checkpoint(tmp_path / "unsized.ckpt").for_dataset(digits)
