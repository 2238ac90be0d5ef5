"""The stitch-type registry: every registered type keeps its declarations (its parameter count,
its closed form, its identity, the points it joins), checked over every type, so a new type is
tested by being registered; and a type registered from outside works end to end."""

import pytest
import torch
from torch import nn

from plato.errors import PlatoError
from plato.stitch import NotStitchable, Stitch, StitchConfig, stitch_networks
from plato.stitch.closed_form import LstsqStats
from plato.stitch.registry import (
    MapShape,
    list_stitch_types,
    register_stitch,
    resolve_stitch,
    stitch_types,
    unregister_stitch,
)
from tests.stitch.constrained import padded_procrustes

# One concrete name per registered type: the plain name, or the family's with an argument.
EXAMPLE_ARGUMENT = {"convKxK": "conv3x3", "lowrank-R": "lowrank-3", "sparse-N": "sparse-6"}
# Shapes a stitch joins: the same grid, a grid 2x smaller and 2x larger, and vectors.
SHAPES = [((8, 4, 4), (6, 4, 4)), ((8, 8, 8), (6, 4, 4)), ((8, 4, 4), (6, 8, 8)),
          ((8,), (6,))]


def names() -> list[str]:
    return [EXAMPLE_ARGUMENT.get(t.name, t.name) for t in stitch_types()]


def test_every_type_is_listed_and_resolves():
    assert list_stitch_types() == ["bn-conv1x1-bn", "conv1x1", "convKxK", "lowrank-R", "mlp",
                                   "plato", "orthogonal", "permutation", "sparse-N"]
    assert list_stitch_types("conv*") == ["conv1x1", "convKxK"]
    for t, name in zip(stitch_types(), names(), strict=True):
        assert resolve_stitch(name)[0] is t
    assert resolve_stitch("lowrank-8")[1] == 8 and resolve_stitch("conv5x5")[1] == 5
    with pytest.raises(PlatoError, match="unknown stitch type 'mpl' \\(did you mean mlp\\?\\)"):
        resolve_stitch("mpl")
    for bad, why in (("lowrank-0", "rank must be at least 1"), ("conv4x4", "K must be odd"),
                     ("lowrank-R", "choose one of")):
        with pytest.raises(PlatoError, match=why):
            resolve_stitch(bad)


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("src, dst", SHAPES)
def test_declared_parameters_are_the_built_ones(name, src, dst):
    kind, arg = resolve_stitch(name)
    try:
        stitch = Stitch(name, src, dst)
    except NotStitchable:
        assert len(src) == 1 and not kind.vectors  # the only refusal among these shapes
        return
    shape = MapShape(src[0], dst[0], len(dst) == 3, src[1:] or None, dst[1:] or None)
    assert kind.parameters(shape, arg) == stitch.num_parameters
    assert stitch.eval()(torch.randn(2, *src)).shape == (2, *dst)


@pytest.mark.parametrize("name", [n for n, t in zip(names(), stitch_types(), strict=True)
                                  if t.linear])
@pytest.mark.parametrize("src, dst", SHAPES)
def test_a_closed_form_recovers_an_exact_linear_map(name, src, dst):
    """Targets that are exactly an affine map of the design rows: each linear type's closed
    form, from the streamed statistics, reproduces them (lowrank-3 where the map has rank 3)."""
    torch.manual_seed(0)
    stitch = Stitch(name, src, dst).eval()
    x = torch.randn(64, *src)
    rows = stitch.design(x).double()  # (N, d_in)
    d_in, d_out = rows.shape[1], dst[0]
    w = torch.randn(d_in, d_out, dtype=torch.float64)
    if name.startswith("lowrank-"):
        w = w[:, :3] @ torch.randn(3, d_out, dtype=torch.float64)  # rank 3
    if name == "orthogonal":  # 1.7 times a semi-orthogonal map
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        w = 1.7 * u @ vh
    if name == "permutation":  # each output one input (each input at most twice), scaled
        source = torch.randperm(d_in).repeat(2)[:d_out]
        w = torch.zeros(d_in, d_out, dtype=torch.float64)
        w[source, torch.arange(d_out)] = torch.rand(d_out, dtype=torch.float64) + 0.5
    y = rows @ w + torch.randn(d_out, dtype=torch.float64)
    stats = LstsqStats()
    stats.update(rows, y)
    stitch.set_affine(stats.solve(ridge=0.0))
    with torch.no_grad():
        out = stitch(x)
    if name == "orthogonal" and d_in > d_out:
        # Zero-padded Procrustes also fits the receiver's padded (zero) directions: over the
        # family it is not plain least squares (no closed form is), so it is checked against
        # its own formula (tests/stitch/test_constrained.py), not against the generating map
        y = padded_procrustes(rows, y)
    torch.testing.assert_close(stitch.targets(out).double(), y, rtol=1e-3, atol=1e-3)


def test_types_without_a_closed_form_say_so():
    for name, t in zip(names(), stitch_types(), strict=True):
        stitch = Stitch(name, (8, 4, 4), (6, 4, 4))
        if t.linear:
            stitch.require_linear()
        else:
            with pytest.raises(PlatoError, match="lstsq needs a linear stitch"):
                stitch.require_linear()


@pytest.mark.parametrize("name", names())
def test_an_identity_is_exact_where_the_type_has_one(name):
    kind, _ = resolve_stitch(name)
    for shape in ((8, 4, 4), (8,)):
        if len(shape) == 1 and not kind.vectors:
            continue
        stitch = Stitch(name.replace("lowrank-3", "lowrank-8"), shape, shape)
        x = torch.randn(5, *shape)
        if kind.identity is None:
            with pytest.raises(PlatoError, match="identity"):
                stitch.init_identity()
            continue
        stitch.init_identity()
        assert torch.equal(stitch.eval()(x), x)


@pytest.fixture
def diagonal_type():
    """A type registered from outside the package, as a user's own module would: a scale and
    shift per channel (equal widths only), no closed form."""

    def refuses(shape: MapShape, _) -> str | None:
        return None if shape.c_in == shape.c_out else "needs as many channels in as out"

    class Diagonal(nn.Module):
        def __init__(self, channels: int, spatial: bool) -> None:
            super().__init__()
            view = (1, channels, 1, 1) if spatial else (1, channels)
            self.scale = nn.Parameter(torch.ones(view))
            self.shift = nn.Parameter(torch.zeros(view))

        def forward(self, x):
            return x * self.scale + self.shift

    register_stitch("diagonal", summary="a scale and shift per channel",
                    parameters=lambda s, _: 2 * s.c_in, refuses=refuses)(
        lambda shape, _: Diagonal(shape.c_in, shape.spatial))
    yield
    unregister_stitch("diagonal")


def test_a_type_registered_from_outside_stitches_end_to_end(diagonal_type, digits,
                                                            digits_resnet):
    assert list_stitch_types()[-1] == "diagonal"
    with pytest.raises(NotStitchable, match="diagonal needs as many channels in as out"):
        Stitch("diagonal", (8, 4, 4), (6, 4, 4))
    config = StitchConfig(objective="task", epochs=1, batch_size=64, device="cpu")
    result, model = stitch_networks(digits_resnet, digits_resnet, "layer2.0", "layer2.0",
                                    digits, stitch="diagonal", config=config, progress=False)
    assert result.stitch == "diagonal" and result.stitch_parameters == 2 * 16
    assert result.stitched_accuracy > 0.8  # a self-stitch that starts near the identity
    with pytest.raises(PlatoError, match="lstsq needs a linear stitch"):
        stitch_networks(digits_resnet, digits_resnet, "layer2.0", "layer2.0", digits,
                        stitch="diagonal", config=StitchConfig(objective="lstsq",
                                                               device="cpu"), progress=False)
