"""The zoo's Vision Transformer: timm's layout and names, attention as PyTorch computes it,
token cut points with their layout, trained on real data."""

import pytest
import torch
from torch import nn

import plato
from plato.errors import ModelError
from plato.models.tokens import TokenLayout, infer_layout, layout_of
from tests.helpers import run_plato


def test_sizes_and_names_are_timms():
    # timm's vit_tiny_patch16_224 and vit_small_patch16_224 have exactly these many
    # parameters: same layers, same shapes
    for name, count in (("vit-tiny", 5_717_416), ("vit-small", 22_050_664)):
        model = plato.create_model(name, num_classes=1000, input_shape=(3, 224, 224),
                                   patch_size=16)
        assert sum(p.numel() for p in model.parameters()) == count, name
    keys = set(plato.create_model("vit-tiny", depth=1).state_dict())
    assert keys == {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                    "norm.weight", "norm.bias", "head.weight", "head.bias"} | {
        f"blocks.0.{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1",
                                      "mlp.fc2") for p in ("weight", "bias")}


def test_attention_is_multi_head_attention():
    """qkv and proj laid out as timm's: the same numbers as torch's MultiheadAttention with
    those weights (a wrong head split would differ)."""
    torch.manual_seed(0)
    block = plato.create_model("vit-tiny", depth=1, dim=48, heads=4).blocks[0].attn.eval()
    reference = nn.MultiheadAttention(48, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(block.qkv.weight)
        reference.in_proj_bias.copy_(block.qkv.bias)
        reference.out_proj.weight.copy_(block.proj.weight)
        reference.out_proj.bias.copy_(block.proj.bias)
        x = torch.randn(3, 17, 48)
        expected, _ = reference(x, x, x, need_weights=False)
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_cut_points_are_tokens_with_their_layout():
    model = plato.create_model("vit-tiny", depth=3)
    points = plato.cut_points(model)
    assert [p.name for p in points] == ["patch_embed", "blocks.0", "blocks.1", "blocks.2",
                                        "pool"]
    assert points[0].shape == (64, 192) and points[0].tokens == TokenLayout(0, (8, 8))
    assert points[1].shape == (65, 192) and points[1].tokens == TokenLayout(1, (8, 8))
    assert points[-1].shape == (192,) and points[-1].tokens is None
    assert points[1].to_dict()["tokens"] == {"prefix": 1, "grid": [8, 8]}
    # registers sit after the class token; a non-square grid comes from the model
    regs = plato.create_model("vit-tiny", depth=1, reg_tokens=4, input_shape=(3, 32, 16))
    block = plato.cut_points(regs)[1]
    assert block.shape == (5 + 32, 192) and block.tokens == TokenLayout(5, (8, 4))


def test_the_layout_splits_and_joins_tokens():
    layout = TokenLayout(1, (2, 3))
    x = torch.randn(4, 7, 5)
    grid, prefix = layout.split(x)
    assert grid.shape == (4, 5, 2, 3) and prefix.shape == (4, 1, 5)
    assert torch.equal(grid[:, :, 1, 2], x[:, 6])  # row-major: row 1, column 2 is token 1+5
    assert torch.equal(layout.join(grid, prefix), x)
    assert infer_layout(65) == TokenLayout(1, (8, 8)) and infer_layout(64) == TokenLayout(0, (8, 8))
    assert infer_layout(35) is None  # no prefix of at most 8 leaves a square
    assert layout_of(nn.Linear(2, 2), (10,)) is None


def test_pooling_and_bad_options():
    avg = plato.create_model("vit-tiny", depth=1, class_token=False, global_pool="avg")
    points = plato.cut_points(avg)
    assert points[1].tokens == TokenLayout(0, (8, 8))
    for options, field in (({"patch_size": 5}, "patch_size"), ({"heads": 5}, "heads"),
                           ({"global_pool": "max"}, "global_pool"),
                           ({"class_token": False}, "class_token")):
        with pytest.raises(ModelError, match=field):
            plato.create_model("vit-tiny", **options)


def test_trained_on_digits(digits_vit, digits):
    from plato.train import evaluate

    assert evaluate(digits_vit, digits, device="cpu")["accuracy"] > 0.8


def test_position_embedding_and_class_token_are_not_decayed():
    from plato.train import param_groups

    model = plato.create_model("vit-tiny", depth=1)
    decayed = {id(p) for p in param_groups(model, 0.05)[0]["params"]}
    assert id(model.pos_embed) not in decayed and id(model.cls_token) not in decayed
    assert id(model.blocks[0].attn.qkv.weight) in decayed


@pytest.mark.slow
def test_a_user_stitches_a_vit_checkpoint_into_a_resnet(tmp_path, digits_vit,
                                                        digits_checkpoints):
    """The command line end to end: `plato stitch` joins a ViT's tokens to a conv map with a
    class-token setting, a bad setting is one line. (`plato train --option` with a model's own
    options: tests/models/test_vgg.py; `plato models --json` lists CutPoint.to_dict.)"""
    import json

    from plato.checkpoint import save_checkpoint

    vit = save_checkpoint(tmp_path / "vit.ckpt", digits_vit, dataset="digits").path
    out = json.loads(run_plato(
        "stitch", str(digits_checkpoints["resnet"]), str(vit), "--from", "layer2.0",
        "--to", "blocks.0", "--fast", "--set", "class_token=mean", "--set", "max_steps=300",
        "--quiet", "--json", ok=True).stdout)
    assert out["receiver_point"] == "blocks.0" and out["stitched_accuracy"] > 0.3
    failed = run_plato("stitch", str(vit), str(vit), "--from", "blocks.0", "--to", "blocks.0",
                       "--set", "class_token=first", "--quiet", ok=False)
    assert "class_token" in failed.stderr and "Traceback" not in failed.stderr
