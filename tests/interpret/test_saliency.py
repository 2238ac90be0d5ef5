"""Saliency through stitched networks (plato.interpret.saliency, `plato saliency`)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from plato.errors import PlatoError
from plato.interpret.config import SaliencyConfig
from plato.interpret.saliency import deletion_area, deletion_curve, explain_stitch, rank_agreement
from plato.stitch import StitchedModel
from tests.helpers import run_plato

QUICK = SaliencyConfig(images=24, shown=4, ig_steps=8, deletion_steps=8)


def identity_self_stitch(net, point, channels):
    model = StitchedModel(net, point, "conv1x1", net, point)
    with torch.no_grad():
        model.stitch.map.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        model.stitch.map.bias.zero_()
    return model


def test_a_network_and_its_identity_self_stitch_agree_everywhere(digits, digits_resnet):
    result = explain_stitch(identity_self_stitch(digits_resnet, "layer2.0", 16), digits, QUICK)
    assert list(result.methods) == ["integrated_gradients", "gradient_x_input", "grad_cam"]
    for method, n in result.methods.items():
        assert n["agreement_receiver"] == pytest.approx(1.0, abs=1e-6), method
        assert n["agreement_sender"] == pytest.approx(1.0, abs=1e-6), method
        assert n["deletion_stitched"] == pytest.approx(n["deletion_receiver"], abs=1e-6)
    assert result.shown[("grad_cam", "stitched")].shape == (4, 8, 8)
    assert result.headline()["saliency_agreement"] == pytest.approx(1.0, abs=1e-6)


def test_the_maps_are_faithful_to_a_trained_network(digits, digits_resnet):
    n = explain_stitch(identity_self_stitch(digits_resnet, "layer1.0", 8), digits,
                       QUICK).methods["integrated_gradients"]
    # deleting the pixels IG calls important first hurts much more than a random order
    assert n["deletion_stitched"] < 0.7 * n["deletion_random_order"]


def test_grad_cam_needs_spatial_points(digits, digits_resnet):
    model = StitchedModel(digits_resnet, "layer3.0", "conv1x1", digits_resnet, "pool")
    with pytest.raises(PlatoError, match="grad_cam needs spatial cut points, and pool is a "
                                         "vector"):
        explain_stitch(model, digits, QUICK)
    lenient = explain_stitch(model, digits, QUICK, strict=False)
    assert math.isnan(lenient.methods["grad_cam"]["agreement_receiver"])
    assert math.isfinite(lenient.methods["integrated_gradients"]["agreement_receiver"])


def test_grad_cam_at_a_token_point_uses_the_patch_grid(digits, digits_vit):
    """A ViT explained at a block: Grad-CAM on its 4 x 4 patch grid, upsampled to the image;
    through an identity self-stitch every method agrees with the ViT itself."""
    model = StitchedModel(digits_vit, "blocks.0", "conv1x1", digits_vit, "blocks.0")
    model.stitch.init_identity()
    result = explain_stitch(model, digits, QUICK)
    for method, n in result.methods.items():
        assert n["agreement_receiver"] == pytest.approx(1.0, abs=1e-5), method
    cam = result.shown[("grad_cam", "stitched")]
    assert cam.shape == (4, 8, 8) and bool((cam >= 0).all()) and bool((cam > 0).any())


def test_rank_agreement_is_spearman_per_image():
    torch.manual_seed(0)
    a = torch.rand(3, 5, 5)
    assert rank_agreement(a, a.exp()) == pytest.approx([1.0] * 3)  # monotone: same ranks
    assert rank_agreement(a, -a) == pytest.approx([-1.0] * 3)
    constant = rank_agreement(a, torch.ones(3, 5, 5))
    assert np.isnan(constant).all()
    from scipy.stats import spearmanr

    b = torch.rand(3, 5, 5)
    expected = [spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(3)]
    assert rank_agreement(a, b) == pytest.approx(expected)


def test_the_deletion_curve_starts_whole_and_ends_at_the_mean_image():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.randn(2, 1, 4, 4), torch.tensor([0, 2])
    order = torch.stack([torch.randperm(16) for _ in range(2)])
    curve = deletion_curve(net, x, y, order, steps=4)
    with torch.no_grad():
        whole = net(x).softmax(1)[[0, 1], y]
        empty = net(torch.zeros_like(x)).softmax(1)[[0, 1], y]
    assert curve[:, 0] == pytest.approx(whole.tolist())
    assert curve[:, -1] == pytest.approx(empty.tolist())
    assert deletion_area(torch.ones(2, 5)).tolist() == pytest.approx([1.0, 1.0])


def test_unknown_methods_are_named():
    with pytest.raises(PlatoError, match="unknown saliency method.*lime"):
        SaliencyConfig(methods=("lime",))
    assert SaliencyConfig.from_user({"methods": "grad_cam,gradient_x_input"}).methods == (
        "grad_cam", "gradient_x_input")


@pytest.mark.slow
def test_plato_saliency_explains_a_stitch(tmp_path, digits_checkpoints):
    ckpt = str(digits_checkpoints["resnet"])
    out = json.loads(run_plato("saliency", ckpt, ckpt, "--from", "layer1.0", "--to", "layer2.0",
                               "--fast", "--images", "12", "--saliency-set", "ig_steps=4",
                               "--out", str(tmp_path), "--quiet", "--json", ok=True).stdout)
    assert out["stitch"]["receiver_point"] == "layer2.0"
    assert set(out["methods"]) == {"integrated_gradients", "gradient_x_input", "grad_cam"}
    assert -1 <= out["methods"]["gradient_x_input"]["agreement_receiver"] <= 1
    assert Path(out["figure"]).is_file() and Path(out["figure"]).parent == tmp_path
    failed = run_plato("saliency", ckpt, ckpt, "--from", "layer3.0", "--to", "pool", "--fast",
                       "--method", "grad_cam", "--out", str(tmp_path), "--quiet", ok=False)
    assert "grad_cam needs spatial cut points" in failed.stderr
    assert "Traceback" not in failed.stderr
