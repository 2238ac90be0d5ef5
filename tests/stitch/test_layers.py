import pytest
import torch

from plato.errors import PlatoError
from plato.stitch import NotStitchable, Stitch


def test_parameter_counts():
    assert Stitch("bn-conv1x1-bn", (8, 4, 4), (16, 4, 4)).num_parameters == (
        2 * 8 + 8 * 16 + 16 + 2 * 16)
    assert Stitch("conv1x1", (8, 4, 4), (16, 4, 4)).num_parameters == 8 * 16 + 16
    assert Stitch("conv3x3", (8, 4, 4), (16, 4, 4)).num_parameters == 9 * 8 * 16 + 16
    assert Stitch("lowrank-2", (8, 4, 4), (16, 4, 4)).num_parameters == 8 * 2 + 2 * 16 + 16
    assert Stitch("mlp", (8, 4, 4), (16, 4, 4)).num_parameters == 8 * 16 + 16 + 16 * 16 + 16
    assert Stitch("conv1x1", (8,), (16,)).num_parameters == 8 * 16 + 16  # a Linear
    assert Stitch("plato", (8, 8, 8), (16, 4, 4)).num_parameters == 8 * 16 * 4 + 16


@pytest.mark.parametrize("kind", ["bn-conv1x1-bn", "conv1x1", "conv3x3", "lowrank-3", "mlp",
                                  "plato"])
@pytest.mark.parametrize("src, dst", [((8, 8, 8), (6, 4, 4)), ((8, 4, 4), (6, 8, 8)),
                                      ((8, 4, 4), (6, 4, 4))])
def test_any_conv_point_feeds_any_other(kind, src, dst):
    s = Stitch(kind, src, dst).eval()
    assert s(torch.randn(2, *src)).shape == (2, *dst)


@pytest.mark.parametrize("mode", ["area", "bilinear", "nearest"])
def test_resize_modes(mode):
    s = Stitch("conv1x1", (3, 8, 8), (3, 5, 5), resize=mode)
    assert s(torch.randn(2, 3, 8, 8)).shape == (2, 3, 5, 5)


def test_conv_to_vector_pools_and_vector_to_conv_is_refused():
    s = Stitch("bn-conv1x1-bn", (8, 4, 4), (5,)).eval()
    x = torch.randn(3, 8, 4, 4)
    assert s(x).shape == (3, 5)
    torch.testing.assert_close(s.adapter(x), x.mean((2, 3)))
    with pytest.raises(NotStitchable, match="vector -> conv"):
        Stitch("conv1x1", (8,), (4, 2, 2))
    with pytest.raises(NotStitchable):
        Stitch("conv3x3", (8,), (4,))
    with pytest.raises(NotStitchable, match="integer scale"):
        Stitch("plato", (8, 6, 6), (4, 4, 4))
    with pytest.raises(PlatoError, match="unknown stitch type"):
        Stitch("conv2x2", (8, 4, 4), (8, 4, 4))


@pytest.mark.parametrize("kind", ["bn-conv1x1-bn", "conv1x1", "conv3x3", "lowrank-8", "plato"])
def test_identity_init_is_exact(kind):
    s = Stitch(kind, (8, 4, 4), (8, 4, 4))
    s.init_identity()
    x = torch.randn(5, 8, 4, 4)
    assert torch.equal(s.eval()(x), x)
    v = Stitch("bn-conv1x1-bn" if kind == "bn-conv1x1-bn" else "conv1x1", (8,), (8,))
    v.init_identity()
    assert torch.equal(v.eval()(x[:, :, 0, 0]), x[:, :, 0, 0])


@pytest.mark.parametrize("kind", ["bn-conv1x1-bn", "conv1x1", "mlp", "lowrank-2", "plato"])
def test_moment_matching_start(kind):
    torch.manual_seed(0)
    s = Stitch(kind, (8, 8, 8), (6, 4, 4)).train()
    a = torch.randn(64, 8, 8, 8)
    t = 3.0 + 2.0 * torch.rand(64, 6, 4, 4) * torch.arange(1, 7).view(1, 6, 1, 1)
    s.match_output_moments(a, t)
    out = s(a)
    torch.testing.assert_close(out.mean((0, 2, 3)), t.mean((0, 2, 3)), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out.std((0, 2, 3)), t.std((0, 2, 3)), rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("size_in,size_out", [(32, 8), (16, 8), (4, 32), (8, 16), (6, 4)])
def test_area_resize_shortcuts_give_the_same_numbers(size_in, size_out):
    """Integer factors take avg-pool / nearest shortcuts; they must equal area interpolation."""
    from plato.stitch.layers import Resize

    x = torch.randn(3, 5, size_in, size_in)
    expected = torch.nn.functional.interpolate(x, size=(size_out, size_out), mode="area")
    assert torch.equal(Resize((size_out, size_out), "area")(x), expected)


@pytest.mark.parametrize("kind", ["bn-conv1x1-bn", "conv1x1", "mlp", "lowrank-3", "plato"])
@pytest.mark.parametrize("resize", ["area", "nearest"])
def test_upsampling_stitch_maps_before_repeating_with_the_same_values(kind, resize):
    torch.manual_seed(0)
    stitch = Stitch(kind, (6, 4, 4), (5, 16, 16), resize).eval()
    for p in stitch.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, 6, 4, 4)
    with torch.no_grad():
        big = torch.nn.functional.interpolate(x, size=(16, 16), mode="nearest")
        if kind == "plato":
            expected = stitch.map.conv(big)
        else:
            expected = stitch.map(stitch.adapter(x))
        assert stitch.replication == 4
        torch.testing.assert_close(stitch(x), expected, rtol=1e-6, atol=1e-6)
