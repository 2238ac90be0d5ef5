"""The token policy: a ViT's tokens meet conv maps, vectors and other ViTs through every stitch
type and objective, in all four directions, with the class token handled as the setting says."""

import pytest
import torch

import plato
from plato.errors import PlatoError
from plato.models import cut_graph
from plato.models.tokens import TokenLayout
from plato.stitch import StitchConfig, stitch_grid, stitch_networks
from plato.stitch.layers import NotStitchable, Stitch
from plato.stitch.stitched import StitchedModel
from plato.train import evaluate

CPU = {"device": "cpu"}
LINEAR = ("bn-conv1x1-bn", "conv1x1", "lowrank-4", "plato")
NONLINEAR = ("conv3x3", "mlp")


def images(digits, n=64):
    from plato.data.loader import make_loader

    return next(iter(make_loader(digits, "test", n)))[0]


def test_identity_self_stitch_of_a_vit_is_the_vit(digits, digits_vit):
    """Through an identity stitch (class token through the map) a ViT stitched into itself
    at any point *is* the ViT, and keeps its accuracy."""
    graph = cut_graph(digits_vit)
    x = images(digits)
    expected = digits_vit(x)
    base = evaluate(digits_vit, digits)["accuracy"]
    for point in graph.points():
        for kind in ("bn-conv1x1-bn", "conv1x1", "lowrank-32", "plato"):
            stitch = Stitch(kind, point.shape, point.shape, in_tokens=point.tokens,
                            out_tokens=point.tokens)
            stitch.init_identity()
            model = StitchedModel(graph, point, stitch, graph, point).eval()
            assert torch.allclose(model(x), expected, atol=1e-6), (point.name, kind)
        assert evaluate(model, digits)["accuracy"] == base, point.name


def test_closed_form_self_stitch_keeps_the_accuracy(digits, digits_vit):
    base = evaluate(digits_vit, digits)["accuracy"]
    pairs = [(p.name, p.name) for p in cut_graph(digits_vit).points()]
    for outcome, _ in stitch_grid(digits_vit, digits_vit, pairs, digits,
                                  config=StitchConfig(objective="lstsq", **CPU)):
        assert abs(outcome.stitched_accuracy - base) <= 0.005, outcome.sender_point


def test_a_grid_into_one_token_point_from_points_with_and_without_a_class_token(
        digits, digits_vit):
    """Into one receiver point, patch_embed (no class token: the receiver's is the mean of
    the stitched patches) and blocks.0 (its class token through the map) take different
    target rows; in one grid each cell gets the closed form it gets alone (a regression: the
    grid once shared the first cell's target rows, and every cell of the pair failed)."""
    pairs = [("patch_embed", "blocks.1"), ("blocks.0", "blocks.1")]
    config = StitchConfig(objective="lstsq", lstsq_examples=512, **CPU)
    grid = stitch_grid(digits_vit, digits_vit, pairs, digits, config=config)
    for (outcome, _), pair in zip(grid, pairs, strict=True):
        assert not isinstance(outcome, Exception), outcome
        alone, _ = stitch_networks(digits_vit, digits_vit, *pair, digits, config=config)
        assert outcome.stitched_accuracy == alone.stitched_accuracy, pair
        assert outcome.stitch_loss == pytest.approx(alone.stitch_loss, rel=1e-9), pair


DIRECTIONS = {  # sender (network, point) -> receiver (network, point)
    "cnn->cnn": (("cnn", "layer1.0"), ("cnn", "layer2.0")),
    "cnn->vit": (("cnn", "layer1.0"), ("vit", "blocks.0")),
    "vit->cnn": (("vit", "blocks.0"), ("cnn", "layer2.0")),
    "vit->vit": (("vit", "blocks.0"), ("vit", "blocks.1")),
}


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_type_and_objective_in_every_direction(direction, digits, digits_resnet,
                                                     digits_vit):
    """Each type fits (the closed form where linear, else the task loss; `match` and
    `lstsq+task` once each) and the stitched network classifies: a number in [0, 1], the
    stitch's output of the receiver's shape."""
    nets = {"cnn": digits_resnet, "vit": digits_vit}
    graphs = {name: cut_graph(net) for name, net in nets.items()}
    (s_net, s_point), (r_net, r_point) = DIRECTIONS[direction]
    r_shape = graphs[r_net].point(r_point).shape
    short = {"max_steps": 20, "min_steps": 10, "check_every": 10, "lstsq_examples": 512, **CPU}
    plan = [(kind, "lstsq") for kind in LINEAR] + [(kind, "task") for kind in NONLINEAR] + [
        ("conv1x1", "match"), ("bn-conv1x1-bn", "lstsq+task")]
    for kind, objective in plan:
        result, model = stitch_networks(
            nets[s_net], nets[r_net], s_point, r_point, digits, stitch=kind,
            config=StitchConfig.converging(objective=objective, **short),
            accuracies=(0.9, 0.9), graphs=(graphs[s_net], graphs[r_net]))
        assert 0 <= result.stitched_accuracy <= 1, (kind, objective)
        assert result.stitch_parameters == model.stitch.num_parameters > 0
        out = model.stitch(model.sender_activation(images(digits, 4)))
        assert tuple(out.shape[1:]) == r_shape, (kind, objective)


@pytest.mark.slow
def test_cnn_to_vit_and_vit_to_cnn_train_well_above_chance(digits, digits_resnet, digits_vit):
    config = StitchConfig.converging(max_steps=300, **CPU)
    into_vit, _ = stitch_networks(digits_resnet, digits_vit, "layer1.0", "blocks.0", digits,
                                  config=config)
    from_vit, _ = stitch_networks(digits_vit, digits_resnet, "blocks.0", "layer2.0", digits,
                                  config=config)
    assert into_vit.stitched_accuracy > 0.5 and from_vit.stitched_accuracy > 0.5


def test_differing_grids_are_resized(digits, digits_vit):
    """A 4 x 4 patch grid into a 2 x 2 one (another patch size): the same resize as conv."""
    torch.manual_seed(1)
    coarse = plato.create_model("vit-tiny", input_shape=digits.input_shape, patch_size=4,
                                depth=2, dim=16, heads=2).eval()
    point = cut_graph(coarse).point("blocks.0")
    assert point.tokens == TokenLayout(1, (2, 2))
    result, model = stitch_networks(digits_vit, coarse, "blocks.0", "blocks.0", digits,
                                    config=StitchConfig(objective="lstsq", **CPU))
    assert model.stitch(model.sender_activation(images(digits, 3))).shape == (3, 5, 16)
    assert 0 <= result.stitched_accuracy <= 1


def test_class_token_policies():
    grid, tokens = (8, 4, 4), (17, 6)
    layout = TokenLayout(1, (4, 4))
    a = torch.randn(10, *grid)
    # mean: the receiver's class token is the mean of the stitched patch tokens
    out = Stitch("conv1x1", grid, tokens, class_token="mean", out_tokens=layout)(a)
    assert torch.allclose(out[:, 0], out[:, 1:].mean(1), atol=1e-6)
    # map from a conv map (no class token to map): falls back to the mean
    assert Stitch("conv1x1", grid, tokens, out_tokens=layout).prefix_mode == "mean"
    # learned: one trained token, the same for every example
    learned = Stitch("conv1x1", grid, tokens, class_token="learned", out_tokens=layout)
    assert learned.prefix_mode == "learned"
    with torch.no_grad():
        learned.prefix_tokens.fill_(3.0)
    assert torch.equal(learned(a)[:, 0], torch.full((10, 6), 3.0))
    # map between token points: the sender's class token reaches the receiver's, only it
    s = Stitch("conv1x1", (17, 6), (17, 5), in_tokens=layout, out_tokens=layout)
    x = torch.randn(10, 17, 6)
    moved = x.clone()
    moved[:, 0] += 1.0
    assert not torch.allclose(s(x)[:, 0], s(moved)[:, 0])
    assert torch.equal(s(x)[:, 1:], s(moved)[:, 1:])
    # conv3x3 mixes neighbours: a class token has none, so its token is the mean
    assert Stitch("conv3x3", (17, 6), (17, 5), in_tokens=layout,
                  out_tokens=layout).prefix_mode == "mean"


def test_tokens_into_a_vector_point():
    """`map`: the sender's class token is the vector (what the ViT pools); `mean`: the mean of
    its patch tokens (what a conv map's average pool gives)."""
    layout = TokenLayout(1, (4, 4))
    x = torch.randn(10, 17, 6)
    patches_moved = x.clone()
    patches_moved[:, 1:] += 1.0
    by_token = Stitch("conv1x1", (17, 6), (5,), in_tokens=layout).eval()
    assert torch.equal(by_token(x), by_token(patches_moved))
    by_mean = Stitch("conv1x1", (17, 6), (5,), class_token="mean", in_tokens=layout).eval()
    assert not torch.allclose(by_mean(x), by_mean(patches_moved))


def test_learned_class_token_starts_at_the_receivers_mean(digits, digits_resnet, digits_vit):
    _, model = stitch_networks(digits_resnet, digits_vit, "layer1.0", "blocks.0", digits,
                               config=StitchConfig(objective="lstsq", class_token="learned",
                                                   **CPU))
    from plato.data.loader import make_loader

    x = torch.cat([x for x, _ in make_loader(digits, "train", 512)])  # as the fit reads them
    with torch.no_grad():
        own = model.receiver_activation(x)[:, 0].mean(0)
    assert torch.allclose(model.stitch.prefix_tokens[0, 0], own, atol=1e-4)


def test_what_cannot_be_stitched_says_why():
    with pytest.raises(NotStitchable, match="vector -> tokens"):
        Stitch("conv1x1", (8,), (17, 6))
    with pytest.raises(NotStitchable, match="has no patch grid"):
        Stitch("conv1x1", (35, 6), (8, 4, 4))  # 35 tokens: no prefix leaves a square
    identity = Stitch("conv3x3", (17, 6), (17, 6))
    with pytest.raises(PlatoError, match="class token"):
        identity.init_identity()
    with pytest.raises(PlatoError, match="class_token must be one of"):
        Stitch("conv1x1", (17, 6), (17, 6), class_token="drop")
    with pytest.raises(PlatoError, match="class_token"):
        StitchConfig(class_token="first")


def test_measures_read_tokens_as_their_patch_grid():
    """A ViT's tokens built from a conv map: `positions` and `pool` see that map (the class
    token dropped), so a measure between them is its identity value; `flatten` keeps every
    token."""
    from plato.similarity import MEASURES
    from plato.similarity.base import as_matrix

    torch.manual_seed(0)
    grid = torch.randn(40, 6, 4, 4)
    tokens = TokenLayout(1, (4, 4)).join(grid, torch.randn(40, 1, 6))  # (40, 17, 6)
    assert torch.equal(as_matrix(tokens, "positions"), as_matrix(grid, "positions"))
    assert torch.allclose(as_matrix(tokens, "pool"), as_matrix(grid, "pool"))
    assert as_matrix(tokens, "flatten").shape == (40, 17 * 6)
    for layout in ("positions", "pool"):
        assert float(MEASURES["linear_cka"](tokens, grid, layout=layout)) == pytest.approx(1.0)
    with pytest.raises(PlatoError, match="same spatial size"):
        MEASURES["linear_cka"](tokens, torch.randn(40, 6, 2, 2), layout="positions")


def test_distance_takes_each_token_as_a_sample():
    from plato.stitch.distance import ChannelGaussian, channel_rows

    torch.manual_seed(0)
    mix = torch.randn(6, 6)
    own = torch.randn(2000, 17, 6) @ mix  # correlated channels
    assert channel_rows(own).shape == (2000 * 17, 6)
    gaussian = ChannelGaussian.fit(own.split(500))
    assert 0.9 < gaussian.distance(own) < 1.05
    assert gaussian.distance(own[:, :, torch.randperm(6)]) > 1.5  # channels mixed up


def test_register_tokens_travel_with_the_class_token(digits):
    """A ViT with 4 registers: its 5 prefix tokens go through the map together, so the
    identity self-stitch is the network; into a ViT without registers they become the mean."""
    torch.manual_seed(0)
    regs = plato.create_model("vit-tiny", input_shape=digits.input_shape, patch_size=2,
                              depth=2, dim=16, heads=2, reg_tokens=4).eval()
    graph = cut_graph(regs)
    point = graph.point("blocks.0")
    assert point.tokens == TokenLayout(5, (4, 4))
    stitch = Stitch("bn-conv1x1-bn", point.shape, point.shape, in_tokens=point.tokens,
                    out_tokens=point.tokens)
    stitch.init_identity()
    x = images(digits, 8)
    model = StitchedModel(graph, point, stitch, graph, point).eval()
    assert torch.allclose(model(x), regs(x), atol=1e-6)
    plain = Stitch("conv1x1", point.shape, (17, 16), in_tokens=point.tokens,
                   out_tokens=TokenLayout(1, (4, 4)))
    assert plain.prefix_mode == "mean" and plain(torch.randn(3, 21, 16)).shape == (3, 17, 16)
