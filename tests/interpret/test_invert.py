"""Input reconstruction from cut points (plato.interpret.invert, `plato invert`)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from plato.data.images import as_uint8, pixels
from plato.errors import PlatoError
from plato.interpret.config import InvertConfig
from plato.interpret.invert import (
    Decoder,
    fit_decoder,
    image_quality,
    invert_point,
    measure_decoder,
)
from plato.models import cut_graph
from tests.helpers import run_plato

QUICK = InvertConfig(max_steps=700, min_steps=200, optimise_steps=60, images=4)


@pytest.mark.slow
def test_the_decoder_reconstructs_the_input_itself_almost_perfectly(digits):
    result = invert_point(nn.Identity(), digits, QUICK)
    assert result.psnr > 35 and result.ssim > 0.99
    assert result.shown.shape == (4, *digits.input_shape) and result.shown.dtype == torch.uint8
    assert result.optimised is not None and result.optimised_psnr > 20


@pytest.mark.slow
def test_reconstruction_quality_falls_through_the_pooling_stages(digits, digits_resnet):
    graph = cut_graph(digits_resnet)
    psnr = {p: invert_point(graph.split(p)[0], digits, replace(QUICK, optimise_steps=0)).psnr
            for p in ("stem", "layer2.0", "layer4.0")}
    assert psnr["stem"] > psnr["layer2.0"] + 3 > psnr["layer4.0"] + 6, psnr


def test_the_decoder_is_sized_from_the_activation_and_the_image():
    for shape, image in (((64,), (3, 32, 32)), ((8, 8, 8), (3, 32, 32)), ((16, 7, 7), (1, 28, 28)),
                         ((4, 5, 5), (1, 28, 28)), ((32, 32, 32), (3, 32, 32)),
                         ((65, 16), (3, 32, 32)), ((16, 8), (1, 8, 8))):  # ViT tokens
        decoder = Decoder(shape, image, width=32)
        assert decoder(torch.randn(2, *shape)).shape == (2, *image), (shape, image)
    with pytest.raises(PlatoError, match="shape"):
        Decoder((35, 5), (1, 8, 8))  # 35 tokens: no patch grid


@pytest.mark.slow
def test_a_vits_tokens_are_decoded_from_their_patch_grid(digits, digits_vit):
    """The decoder reads the patch tokens as a map (the class token left out): from a ViT's
    first block, the digits come back recognisably (a blank guess is ~12 dB)."""
    prefix = cut_graph(digits_vit).split("blocks.0")[0]
    result = invert_point(prefix, digits, replace(QUICK, optimise_steps=0))
    assert result.psnr > 18, result.psnr


def test_quality_needs_images_in_the_same_range():
    x = torch.rand(3, 1, 8, 8)
    assert image_quality(x, x)["ssim"].tolist() == pytest.approx([1.0] * 3)
    with pytest.raises(PlatoError, match=r"pixel values in \[0, 1\].*reconstructions"):
        image_quality(x * 255, x)  # one in [0, 255], the other in [0, 1]
    with pytest.raises(PlatoError, match="originals"):
        image_quality(x, x - 0.5)  # normalised originals


def test_the_test_pass_is_streamed_the_same_at_any_batch_size(digits):
    decoder, fit = fit_decoder(nn.Identity(), digits,
                               InvertConfig(max_steps=100, min_steps=50, check_every=50))
    small = measure_decoder(nn.Identity(), decoder, digits, batch_size=16)
    large = measure_decoder(nn.Identity(), decoder, digits, batch_size=1000)
    assert small["psnr"] == pytest.approx(large["psnr"], rel=1e-6)
    assert small["ssim"] == pytest.approx(large["ssim"], rel=1e-6)
    assert small["test_examples"] == len(digits.test)
    assert fit["steps"] == 100 and fit["converged"] is False  # cut off, and says so


def test_a_decoder_whose_loss_turns_non_finite_says_so(digits):
    """The non-finite check runs at the looks (no host sync per step) and names the first bad
    step (features of 1e30 overflow the float32 loss at once)."""

    class Huge(nn.Module):
        def forward(self, x):
            return x * 1e30

    with pytest.raises(PlatoError, match="non-finite at step 0: lower the invert setting lr"):
        fit_decoder(Huge(), digits,
                    InvertConfig(lr=1e-3, max_steps=100, min_steps=50, check_every=50))


def test_pixels_undo_the_normalisation(digits):
    x = digits.test.images[:4].float() / 255.0
    mean = torch.tensor(digits.mean).view(1, -1, 1, 1)
    std = torch.tensor(digits.std).view(1, -1, 1, 1)
    assert torch.allclose(pixels((x - mean) / std, digits), x, atol=1e-6)


def test_pictures_are_stored_whatever_the_layout_they_were_computed_in(digits):
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    colour = type(digits)("c", digits.train, digits.test, digits.classes, (0.5,) * 3, (0.2,) * 3)
    assert as_uint8(x, colour).is_contiguous()  # safetensors refuses anything else


def test_settings_are_checked_by_name():
    with pytest.raises(PlatoError, match="unknown invert setting 'max_step'"):
        InvertConfig.from_user({"max_step": 3})
    with pytest.raises(PlatoError, match="'lr' takes a number, got 'fast'"):
        InvertConfig.from_user({"lr": "fast"})
    assert InvertConfig.from_user({"lr": 1}).lr == 1.0
    with pytest.raises(PlatoError, match=r"images must be in \[1, 100,000\], got 0"):
        InvertConfig(images=0)


@pytest.mark.slow
def test_plato_invert_stores_resumes_and_draws(tmp_path, digits_checkpoints):
    out = tmp_path / "run"
    args = ["invert", str(digits_checkpoints["cnn"]), "--out", str(out), "--points", "0",
            "--points", "pool", "--set", "max_steps=150", "--set", "min_steps=50",
            "--set", "check_every=50", "--images", "3", "--set", "optimise_steps=20",
            "--quiet", "--json"]
    first = json.loads(run_plato(*args, ok=True).stdout)
    assert first["computed"] == 4  # two points, trained and random
    rows = {(r["role"], r["point_index"]): r for r in first["points"]}
    assert set(rows) == {(role, i) for role in ("trained", "random") for i in (0, 2)}
    assert rows[("trained", 2)]["point"] == "pool"
    for r in first["points"]:
        assert 0 < r["ssim"] <= 1 and r["psnr"] > 5 and r["steps"] == 150
    names = {Path(f).name for f in first["figures"]}
    assert names == {"reconstruction_quality.png", "reconstructions-cnn-trained.png",
                     "reconstructions-cnn-random.png", "inversions-cnn-trained.png",
                     "inversions-cnn-random.png"}
    assert all(Path(f).is_file() and Path(f).parent == out for f in first["figures"])
    again = json.loads(run_plato(*args, ok=True).stdout)
    assert again["computed"] == 0 and again["points"] == first["points"]


@pytest.mark.slow
def test_plato_invert_refuses_a_cut_point_that_does_not_exist(tmp_path, digits_checkpoints):
    failed = run_plato("invert", str(digits_checkpoints["cnn"]), "--out", str(tmp_path),
                       "--points", "layer9", "--quiet", ok=False)
    assert "no cut point named 'layer9'" in failed.stderr
    assert "Traceback" not in failed.stderr
