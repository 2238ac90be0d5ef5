"""Pruned networks: the sparsity reported is the sparsity measured, amount 0 is the original,
the pruned copy is an ordinary network and the original is never touched."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import plato
from plato.checkpoint import load_checkpoint, read_metadata, save_checkpoint, weights_hash
from plato.compress import PruneConfig, prune_network, sparsity
from plato.errors import CheckpointError, PlatoError, SettingError
from plato.models import cut_graph
from plato.models.narrow import narrow_to, tensor_shapes
from plato.train import evaluate


def test_amount_zero_is_the_original(digits_resnet):
    pruned = prune_network(digits_resnet, PruneConfig(amount=0.0)).model
    assert pruned is not digits_resnet
    original = digits_resnet.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in pruned.state_dict().items())
    assert pruned.plato_name == digits_resnet.plato_name


@pytest.mark.parametrize("method", ["magnitude", "magnitude-global"])
def test_reported_sparsity_is_the_measured_one(method, digits_resnet):
    before = {k: v.clone() for k, v in digits_resnet.state_dict().items()}
    result = prune_network(digits_resnet, PruneConfig(method=method, amount=0.6))
    convs_and_linears = [m for m in result.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    zeros = sum(int((m.weight == 0).sum()) for m in convs_and_linears)
    total = sum(m.weight.numel() for m in convs_and_linears)
    assert result.zero_weights == zeros and result.prunable_weights == total
    assert result.sparsity == zeros / total == pytest.approx(0.6, abs=0.002)
    if method == "magnitude":  # every layer loses its own share
        for m in convs_and_linears:
            share = float((m.weight == 0).float().mean())
            assert share == pytest.approx(0.6, abs=0.5 / m.weight.numel() + 1e-9)
    # permanent: no mask, no hook, plain weights; the original untouched
    assert not any(hasattr(m, "weight_mask") or m._forward_pre_hooks for m in convs_and_linears)
    assert all(torch.equal(v, before[k]) for k, v in digits_resnet.state_dict().items())
    assert sparsity(digits_resnet)[0] == 0


def test_global_pruning_takes_the_smallest_weights_anywhere(digits_resnet):
    result = prune_network(digits_resnet, PruneConfig(method="magnitude-global", amount=0.5))
    weights = torch.cat([m.weight.detach().flatten().abs() for m in digits_resnet.modules()
                         if isinstance(m, nn.Conv2d | nn.Linear)])
    threshold = weights.kthvalue(result.zero_weights).values
    kept = torch.cat([m.weight.detach().flatten().abs() for m in result.model.modules()
                      if isinstance(m, nn.Conv2d | nn.Linear)])
    assert float(kept[kept != 0].min()) >= float(threshold)


def test_a_pruned_network_is_an_ordinary_network(digits, digits_resnet):
    """It traces, splits exactly and classifies; lightly pruned, nearly as well."""
    result = prune_network(digits_resnet, PruneConfig(amount=0.3))
    graph = cut_graph(result.model)
    x = torch.randn(4, *digits.input_shape)
    prefix, suffix = graph.split("layer2.0")
    with torch.no_grad():
        assert torch.equal(suffix(prefix(x)), result.model(x))
    base = evaluate(digits_resnet, digits)["accuracy"]
    assert evaluate(result.model, digits)["accuracy"] > base - 0.1


def test_bad_settings_name_their_field():
    for amount in (1.0, -0.1, "half", True):
        with pytest.raises(SettingError, match="amount") as err:
            PruneConfig(amount=amount)
        assert err.value.setting == "amount"
    with pytest.raises(SettingError, match="method") as err:
        PruneConfig(method="random")
    assert err.value.setting == "method"
    with pytest.raises(PlatoError, match="no conv or linear layer"):
        prune_network(nn.Sequential(nn.ReLU()), PruneConfig())


def test_channel_pruning_removes_channels_and_stitches_adapt(digits, digits_resnet):
    """Structured pruning really removes channels: the cut points get narrower, the parameter
    count reported is the network's, splits stay exact, and the original stitches into the
    pruned network (and back) across the shape difference."""
    from plato.stitch import StitchConfig, stitch_networks

    assert prune_network(digits_resnet, PruneConfig("channels", 0.0)).parameters == sum(
        p.numel() for p in digits_resnet.parameters())
    result = prune_network(digits_resnet, PruneConfig("channels", 0.5))
    model = result.model
    assert result.parameters == sum(p.numel() for p in model.parameters())
    assert result.parameters < 0.4 * result.original_parameters  # about (1 - 0.5)^2 of convs
    before = {p.name: p.shape for p in cut_graph(digits_resnet).points()}
    after = {p.name: p.shape for p in cut_graph(model).points()}
    assert after["layer2.0"] == (before["layer2.0"][0] // 2, *before["layer2.0"][1:])
    assert model.fc.out_features == 10  # the classes are never pruned
    x = torch.randn(4, *digits.input_shape)
    prefix, suffix = cut_graph(model).split("layer3.0")
    with torch.no_grad():
        assert torch.equal(suffix(prefix(x)), model.eval()(x))
    config = StitchConfig(objective="lstsq", device="cpu")
    into, _ = stitch_networks(digits_resnet, model, "layer2.0", "layer2.0", digits,
                              config=config)
    back, _ = stitch_networks(model, digits_resnet, "layer2.0", "layer2.0", digits,
                              config=config)
    assert 0 <= into.stitched_accuracy <= 1 and back.stitched_accuracy > 0.3


def test_channel_pruning_refuses_what_it_cannot_follow():
    vit = plato.create_model("vit-tiny", depth=1, dim=48, heads=3)
    with pytest.raises(PlatoError, match="'channels' cannot prune VisionTransformer"):
        prune_network(vit, PruneConfig("channels", 0.5))


def test_fine_tuning_keeps_the_pruned_weights_at_zero(digits, digits_resnet):
    """Fine-tuned with the usual recipe, a heavily pruned network recovers accuracy while its
    pruned weights stay zero (the masks hold during training, then are made permanent)."""
    from plato.train import Recipe

    config = PruneConfig("magnitude-global", 0.9)
    bare = prune_network(digits_resnet, config)
    tuned = prune_network(digits_resnet, config, Recipe(epochs=2, batch_size=64, device="cpu"),
                          digits)
    assert tuned.sparsity >= 0.9 - 1e-3 and tuned.zero_weights >= bare.zero_weights
    assert tuned.finetuned_accuracy == pytest.approx(evaluate(tuned.model, digits)["accuracy"])
    assert tuned.finetuned_accuracy > evaluate(bare.model, digits)["accuracy"]
    assert not any(n.endswith("_orig") for n, _ in tuned.model.named_parameters())
    with pytest.raises(PlatoError, match="needs the dataset"):
        prune_network(digits_resnet, config, Recipe(epochs=1))


def test_a_channel_pruned_checkpoint_rebuilds_at_its_shapes(tmp_path, digits, digits_resnet):
    """Saved and loaded, a channel-pruned network is the same network (its widths from its
    weights, `narrowed` in the metadata); its random control has the pruned shapes too; a
    network with weights that fit no narrowing of its config is refused."""
    model = prune_network(digits_resnet, PruneConfig("channels", 0.5)).model
    saved = save_checkpoint(tmp_path / "p.ckpt", model, dataset="digits")
    assert saved.meta["narrowed"] is True
    loaded = load_checkpoint(tmp_path / "p.ckpt").model
    assert tensor_shapes(loaded) == tensor_shapes(model)
    assert loaded.layer2[0].conv1.in_channels == model.layer2[0].conv1.in_channels
    x = torch.randn(3, *digits.input_shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    plain = save_checkpoint(tmp_path / "o.ckpt", digits_resnet, dataset="digits")
    assert "narrowed" not in plain.meta
    fresh = plato.create_model("resnet-1111", input_shape=digits.input_shape, width=8)
    narrow_to(fresh, tensor_shapes(model))
    assert sum(p.numel() for p in fresh.parameters()) == sum(
        p.numel() for p in model.parameters())
    with pytest.raises(PlatoError, match="not a narrowing"):
        narrow_to(fresh, {"fc.weight": (10, 999)})
    # a file whose metadata does not say its channels were removed
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    meta = read_metadata(tmp_path / "p.ckpt")
    meta.pop("narrowed")
    meta["weights_sha256"] = weights_hash(tensors)
    save_file(tensors, tmp_path / "bad.ckpt", metadata={"plato": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_a_frozen_network_is_pruned_too(digits, digits_resnet):
    """A network stitched before has frozen parameters, which torch-pruning would skip."""
    frozen = prune_network(digits_resnet, PruneConfig(amount=0.0)).model
    for p in frozen.parameters():
        p.requires_grad_(False)
    result = prune_network(frozen, PruneConfig("channels", 0.5))
    assert result.parameters < 0.4 * result.original_parameters
