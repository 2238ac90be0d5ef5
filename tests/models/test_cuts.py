"""Cut points and splits, over the whole registry: suffix(prefix(x)) == model(x) exactly."""

import pytest
import torch
from torch import nn

import plato
from plato.errors import ModelError
from plato.models import cut_graph

# Small widths keep the layer-level sweep over every model fast; structure is unchanged.
SMALL = {"resnet50": 8, "resnet18": 8, "resnet34": 8, "resnet9": 8, "vgg11": 8, "vgg13": 8,
         "vgg16": 8, "vgg19": 8}


# Tracing the deepest models at layer granularity takes seconds each: they are in the slow lane.
DEEP = ("resnet44", "resnet56", "resnet110", "vit-small")


def every_model() -> list:
    """Every zoo model, as parameters of a test; the deepest marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n
            for n in plato.list_models()]


def build(name, **kw):
    torch.manual_seed(0)
    opts = {"width": SMALL[name]} if name in SMALL else {}
    model = plato.create_model(name, **opts, **kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("name", every_model())
def test_split_is_exact_at_every_point(name):
    model = build(name)
    graph = cut_graph(model)
    x = torch.randn(2, *model.input_shape)
    with torch.no_grad():
        expected = model(x)
        for granularity in ("block", "layer"):
            for point in graph.points(granularity):
                prefix, suffix = graph.split(point)
                act = prefix(x)
                assert tuple(act.shape[1:]) == point.shape, (name, point.name)
                assert torch.equal(suffix(act), expected), (name, granularity, point.name)


@pytest.mark.parametrize("name", plato.list_models())
def test_point_conventions(name):
    model = build(name)
    blocks = plato.cut_points(model)
    layers = plato.cut_points(model, granularity="layer")
    assert [p.index for p in blocks] == list(range(len(blocks)))
    assert blocks[0].name == model.cut_blocks[0]  # index 0: the stem's output
    final = blocks[-1]  # the last point: the pre-logit feature vector
    assert len(final.shape) == 1
    logits = getattr(model, "head", None) or model.fc  # timm's name for a ViT's logits
    head = logits if isinstance(logits, nn.Linear) else logits[0]
    assert final.shape[0] == head.in_features
    # "layer" refines "block": same first and last points, every block point included.
    assert layers[0] == blocks[0] and layers[-1].name == blocks[-1].name
    assert {p.name for p in blocks} <= {p.name for p in layers}
    assert len({p.name for p in layers}) == len(layers)


def test_residual_blocks_hide_their_inside():
    with_skip = [p.name for p in plato.cut_points(build("resnet-1111"), granularity="layer")]
    plain = [p.name for p in plato.cut_points(build("resnet-1111", residual=False),
                                              granularity="layer")]
    assert "layer1.0.conv1" not in with_skip  # two tensors live: not a cut point
    assert "layer1.0.add" in with_skip  # after the sum one tensor carries the state
    assert {"layer1.0.conv1", "layer1.0.bn1", "layer1.0.act1"} <= set(plain)


def test_train_mode_split_is_exact_too():
    model = build("resnet-1111").train()
    x = torch.randn(4, 3, 32, 32)
    prefix, suffix = plato.split(model, "layer2.0")
    torch.manual_seed(0)
    a = model(x)
    b = suffix(prefix(x))
    assert torch.equal(a, b)


def test_split_shares_parameters():
    model = build("cnn-3")
    prefix, suffix = plato.split(model, 1)
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in prefix.parameters()} | {id(p) for p in suffix.parameters()} == ids


def test_point_lookup():
    model = build("resnet-1111")
    graph = cut_graph(model)
    assert graph.point(0).name == "stem" and graph.point(-1).name == "pool"
    assert graph.point("3").name == graph.point(3).name
    assert graph.point("layer1.0.add").shape == (64, 32, 32)  # layer names work in any mode
    with pytest.raises(ModelError, match="out of range"):
        graph.point(99)
    with pytest.raises(ModelError, match="no cut point named 'layer9'"):
        graph.point("layer9")


def test_shapes_follow_the_input_shape():
    model = plato.create_model("resnet-1111", in_channels=1)
    points = plato.cut_points(model, input_shape=(1, 8, 8))
    assert points[0].shape == (64, 8, 8) and points[-2].shape == (512, 1, 1)


def test_extract_matches_prefixes():
    """One pass returns each point's activation by name, the prefix's bit for bit; a point
    given twice (by name and by index) is one entry."""
    model = build("resnet20")
    graph = cut_graph(model)
    x = torch.randn(2, 3, 32, 32)
    outs = graph.extract(["layer3.2", "stem", "layer2.0", 0])(x)
    assert list(outs) == ["layer3.2", "stem", "layer2.0"]
    for name, out in outs.items():
        assert torch.equal(out, graph.split(name)[0](x))


class UserNet(nn.Module):
    """A model Plato never saw: no cut_blocks, a skip connection, a functional relu."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = h + self.body(h)
        return self.head(h.mean((2, 3)))


def test_any_traceable_module():
    model = UserNet().eval()
    graph = cut_graph(model, input_shape=(3, 8, 8))
    names = [p.name for p in graph.points("layer")]
    assert "body.0" not in names  # inside the skip connection
    x = torch.randn(2, 3, 8, 8)
    for p in graph.points("layer"):
        prefix, suffix = graph.split(p, "layer")
        assert torch.equal(suffix(prefix(x)), model(x))
    with pytest.raises(ModelError, match="input_shape"):
        cut_graph(UserNet())


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class Encoder(nn.Module):
    """A wrapper around a list of blocks (torchvision's ViT encoder)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(Residual(c), Residual(c))
        self.norm = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.norm(self.layers(x))


class LibraryShaped(nn.Module):
    """What libraries build: a stack of plain layers (VGG's features), an nn.Identity, a list
    of blocks, a wrapper around one, and a one-conv unit that stays one point."""

    def __init__(self, kwarg_default: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.norm_pre = nn.Identity()
        self.stages = nn.Sequential(Residual(4), Residual(4), Residual(4))
        self.encoder = Encoder(4)
        self.unit = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x, scale=None, causal=False):  # defaults fixed when traced (timm's)
        x = self.unit(self.encoder(self.stages(self.norm_pre(self.features(x)))))
        x = self.pool(x).flatten(1) if scale is None else self.pool(x * scale).flatten(1)
        return self.head(x)


BLOCKS = ["features.3", "features.5", "stages.0", "stages.1", "stages.2",
          "encoder.layers.0", "encoder.layers.1", "encoder", "unit", "pool"]


@pytest.mark.parametrize("mechanism", ["torch.fx", "forward hooks"])
def test_a_model_without_cut_blocks_opens_its_lists_of_blocks(mechanism):
    """Block-level points of a library-shaped model: its units, blocks and wrapped blocks; a
    forward argument with a default (timm's attn_mask) is fixed when traced, not an input
    that would flow into every block; each point splits the model exactly."""
    from plato.models.hooks import HookCutGraph

    torch.manual_seed(0)
    net = LibraryShaped().eval()
    graph = cut_graph(net, (3, 8, 8)) if mechanism == "torch.fx" else \
        HookCutGraph(net, (3, 8, 8), fx_error="(tested through hooks)")
    assert graph.mechanism == mechanism
    assert [p.name for p in graph.points()] == BLOCKS
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for point in graph.points():
            prefix, suffix = graph.split(point)
            assert torch.equal(suffix(prefix(x)), net(x)), point.name
