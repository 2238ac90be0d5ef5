"""torchvision and timm models as users bring them, run for real (the vision lane: `make
test-vision`, an environment where both import; elsewhere these tests skip with the reason).

Random initialisation only: nothing is downloaded."""

import importlib

import pytest
import torch

import plato
from plato.errors import ModelError
from plato.models import cut_graph
from tests.helpers import one_line_error, run_plato

pytestmark = pytest.mark.vision


def needs(library: str):
    """Skip where `library` cannot be imported (the CPU build of torch cannot load the
    registry's torchvision wheels): the vision lane is where these run."""
    try:
        return importlib.import_module(library)
    except Exception as e:
        pytest.skip(f"{library} cannot be imported here ({type(e).__name__}): run make "
                    "test-vision")


# The families people use (issue 32): residual CNNs, VGG, mobile and efficient nets, ConvNeXt,
# ViTs, Swin, RegNet; each built for 3 x 32 x 32 inputs (a ViT gets its image size).
LIBRARY = [
    ("torchvision", "resnet18"), ("torchvision", "resnet50"), ("torchvision", "vgg11_bn"),
    ("torchvision", "mobilenet_v3_small"), ("torchvision", "efficientnet_b0"),
    ("torchvision", "convnext_tiny"), ("torchvision", "vit_b_16"), ("torchvision", "swin_t"),
    ("timm", "resnet18"), ("timm", "vit_tiny_patch16_224"), ("timm", "deit_tiny_patch16_224"),
    ("timm", "convnext_atto"), ("timm", "efficientnet_b0"), ("timm", "regnetx_002"),
]


@pytest.mark.parametrize("library, name", LIBRARY)
def test_every_cut_point_of_a_library_model_splits_it_exactly(library, name):
    """At every block-level and layer-level point, the suffix of the prefix is the model,
    bit for bit, in eval mode (inputs of two examples: BatchNorm in eval mode, and a batch
    that could hide a mix-up of examples)."""
    needs(library)
    torch.manual_seed(0)
    net = plato.create_model(f"{library}:{name}", num_classes=10,
                             input_shape=(3, 32, 32)).eval()
    graph = cut_graph(net)
    blocks = graph.points()
    assert graph.mechanism == "torch.fx" and len(blocks) >= 4, [p.name for p in blocks]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 10)
        for granularity in ("block", "layer"):
            for point in graph.points(granularity):
                prefix, suffix = graph.split(point, granularity)
                assert torch.equal(suffix(prefix(x)), y), (granularity, point.name)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_a_timm_vit_has_its_blocks_as_cut_points(name):
    """timm's forward(x, attn_mask=None, is_causal=False): traced as inputs, the two flowed
    into every block and only `blocks` was a point; fixed at their defaults, each block is."""
    needs("timm")
    net = plato.create_model(f"timm:{name}", num_classes=10, input_shape=(3, 32, 32)).eval()
    names = [p.name for p in cut_graph(net).points()]
    assert names[0] == "patch_embed" and names[-2:] == ["norm", "head_drop"], names
    assert [n for n in names if n.startswith("blocks.")] == [f"blocks.{i}" for i in range(12)]
    assert not {"patch_drop", "norm_pre", "fc_norm"} & set(names)  # nn.Identity: no point


def test_a_library_model_is_built_for_the_data():
    """Classes, channels (timm's in_chans) and a ViT's image size come from the data; a
    torchvision model, 3 channels only, refuses grey images in one line."""
    needs("timm")
    needs("torchvision")
    grey = plato.create_model("timm:resnet18", num_classes=7, input_shape=(1, 28, 28)).eval()
    assert grey(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    for name in ("timm:vit_tiny_patch16_224", "torchvision:vit_b_16"):
        small = plato.create_model(name, num_classes=5, input_shape=(3, 32, 32)).eval()
        assert small(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ModelError, match="takes 3-channel images and this input has 1"):
        plato.create_model("torchvision:resnet18", input_shape=(1, 28, 28))


def test_the_library_commands_fail_in_one_line(tmp_path):
    """`plato import torchvision:resnet18 --dataset digits` was a traceback (a 3-channel stem
    on 1-channel data); a model that cannot run at the asked size printed torch.fx's
    traceback before its error; a timm ViT lists its blocks at its own size too."""
    needs("timm")
    needs("torchvision")
    failed = run_plato("import", "torchvision:resnet18", "--dataset", "digits", "--out",
                       str(tmp_path / "r.ckpt"), ok=False)
    assert "takes 3-channel images" in one_line_error(failed)
    failed = run_plato("models", "torchvision:vgg11_bn", "--input-shape", "3,8,8", ok=False)
    assert "cannot run on input shape (3, 8, 8)" in one_line_error(failed)  # 5 poolings
    listed = run_plato("models", "timm:vit_tiny_patch16_224", "--input-shape", "3,224,224",
                       ok=True).stdout
    assert "blocks.5" in listed and "blocks.11" in listed


@pytest.mark.parametrize("library, name, typo", [("timm", "resnet18", "resnet81"),
                                                  ("torchvision", "resnet18", "resnet81")])
def test_a_library_shorthand_builds_its_models_where_it_imports(library, name, typo):
    """Once skipped everywhere, and failing when it first ran: a batch of one in train mode,
    which BatchNorm refuses."""
    needs(library)
    net = plato.create_model(f"{library}:{name}", num_classes=7).eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ModelError, match=f"no model '{typo}'.*close: .*{name}"):
        plato.create_model(f"{library}:{typo}")


def test_a_timm_model_brings_its_own_normalisation():
    """`plato import timm:...` feeds a timm model the mean and std of its own pretrained
    configuration by default (where it has the data's channels); a named preset or
    --mean/--std overrides it; a torchvision model has none of its own (the dataset's, unless
    named)."""
    from plato.models.inputs import PRESETS, chosen_normalisation

    needs("timm")
    needs("torchvision")
    vit = plato.create_model("timm:vit_tiny_patch16_224", input_shape=(3, 32, 32))
    config = vit.pretrained_cfg
    assert chosen_normalisation(vit, 3) == (tuple(config["mean"]), tuple(config["std"]))
    assert chosen_normalisation(vit, 3, "imagenet") == PRESETS["imagenet"]
    assert chosen_normalisation(vit, 3, "dataset") is None
    grey = plato.create_model("timm:resnet18", input_shape=(1, 28, 28))
    assert chosen_normalisation(grey, 1) is None  # its configuration is for 3 channels
    resnet = plato.create_model("torchvision:resnet18", input_shape=(3, 32, 32))
    assert chosen_normalisation(resnet, 3) is None
    assert chosen_normalisation(resnet, 3, mean=[0.5] * 3, std=[0.25] * 3) == ((0.5,) * 3,
                                                                               (0.25,) * 3)
