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
    assert ("torchvision:vgg11_bn cannot run on images of 8x8" in one_line_error(failed)
            and "it runs on 32x32 and larger" in failed.stderr)  # 5 poolings
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


def test_a_library_network_at_its_own_size_and_options_in_a_sweep(tmp_path, monkeypatch):
    """torchvision's resnet18 imported at 64 pixels with ImageNet's normalisation runs on
    16-pixel colour images exactly as the plain network does on them renormalised and resized
    by the stated policy; a sweep stitches it against a timm ViT it trains with the ViT's own
    option (`patch_size`); a misspelt option is refused in one line before any work."""
    import numpy as np
    import yaml
    from PIL import Image

    from plato.checkpoint import load_checkpoint, read_metadata
    from plato.data import load_dataset
    from plato.data.loader import make_loader
    from plato.models.inputs import PRESETS, resize
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec
    from plato.sweep.store import Store
    from tests.helpers import plato_json

    needs("timm")
    needs("torchvision")
    monkeypatch.setenv("PLATO_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (tmp_path / "imgs" / split / label).mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / label / f"{i}.png")
    data = f"imagefolder:{tmp_path / 'imgs'}"
    imported = plato_json("import", "torchvision:resnet18", "--dataset", data, "--input-size",
                          "64", "--normalisation", "imagenet", "--device", "cpu", "--out",
                          tmp_path / "r.ckpt")
    mean, std = PRESETS["imagenet"]
    assert imported["normalisation"] == {"mean": list(mean), "std": list(std),
                                         "size": [64, 64]}
    ckpt = load_checkpoint(tmp_path / "r.ckpt")
    assert ckpt.meta["config"]["input_shape"] == [3, 64, 64]
    ds = load_dataset(data)
    model = ckpt.for_dataset(ds).eval()
    plain = plato.create_model("torchvision:resnet18", num_classes=2,
                               input_shape=(3, 64, 64)).eval()
    plain.load_state_dict(model.state_dict())
    x, _ = next(iter(make_loader(ds, "test", 16)))  # (16, 3, 16, 16), the dataset's statistics
    pixels = x * torch.tensor(ds.std).view(1, 3, 1, 1) + torch.tensor(ds.mean).view(1, 3, 1, 1)
    own = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(resize(own, (64, 64))), atol=1e-4)

    spec = {"name": "vision", "dataset": data, "pairs": "distinct", "objective": "lstsq",
            "controls": ["trained->trained"], "measures": ["stitch", "linear_cka"],
            "networks": {"r": {"checkpoint": str(tmp_path / "r.ckpt")},
                         "vit": {"train": {"model": "timm:vit_tiny_patch16_224",
                                           "patch_size": 8, "depth": 2, "epochs": 1,
                                           "batch_size": 8}}},
            "points": {"r": ["layer1.1", "layer3.1"], "vit": ["blocks.0", "blocks.1"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    summary = run_sweep(load_spec(tmp_path / "s.yaml"), tmp_path / "run", device="cpu",
                        progress=False)
    assert summary.failed == 0 and summary.done == summary.cells == 8, summary  # 2 x 2, both ways
    with Store(tmp_path / "run" / "results.sqlite") as store:
        networks = store.networks()
        assert store.similarities()["measure"].eq("linear_cka").any()
    trained_vit = networks[(networks["name"] == "vit") & (networks["role"] == "trained")]
    meta = read_metadata(trained_vit["checkpoint"].iloc[0])
    assert meta["config"]["patch_size"] == 8 and meta["config"]["depth"] == 2
    spec["networks"]["vit"]["train"]["pach_size"] = 8
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(spec))
    failed = run_plato("sweep", tmp_path / "typo.yaml", "--out", tmp_path / "typo",
                       "--device", "cpu", ok=False)
    assert "pach_size" in one_line_error(failed)
    assert not list((tmp_path / "typo").glob("networks/*.ckpt"))  # refused before training
