"""The constrained stitch families (orthogonal, permutation, sparse-N): each closed form
against a direct implementation of its published formula, on random data to 1e-5; each
family at every kind of cut point the affine stitch joins (conv maps, vectors, ViT tokens),
fitted by the converging default and saying whether it converged; the constraint kept by
training."""

import itertools

import numpy as np
import pytest
import torch

from plato.errors import PlatoError
from plato.stitch import Stitch, StitchConfig, stitch_networks
from plato.stitch.closed_form import LstsqStats
from tests.stitch.constrained import maiorca_translation, padded_procrustes, pinv_affine

FAMILIES = ("orthogonal", "permutation", "sparse-3")


def fitted(name: str, x: torch.Tensor, y: torch.Tensor, ridge: float = 0.0,
           translator: str | None = None) -> torch.Tensor:
    """The stitch `name` between vectors, fitted in closed form to (x, y) (or translated):
    its output on x."""
    stitch = Stitch(name, (x.shape[1],), (y.shape[1],)).double().eval()  # float64 throughout
    stats = LstsqStats()
    stats.update(x.double(), y.double())
    stitch.set_affine(stats.translation(translator, ridge) if translator
                      else stats.solve(ridge=ridge))
    with torch.no_grad():
        return stitch(x.double())


def data(n: int, d_in: int, d_out: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated, shifted, unequally scaled rows and noisy targets of a random affine map."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g) @ torch.randn(d_in, d_in, generator=g) + 3.0
    y = x @ torch.randn(d_in, d_out, generator=g) + torch.randn(n, d_out, generator=g) - 1.0
    return x, y


@pytest.mark.parametrize("d_in, d_out", [(6, 6), (9, 5), (4, 7)])
def test_affine_is_least_squares_with_bias_by_the_pseudo_inverse(d_in, d_out):
    x, y = data(500, d_in, d_out)
    torch.testing.assert_close(fitted("conv1x1", x, y), pinv_affine(x, y), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("d_in, d_out", [(6, 6), (9, 5), (4, 7)])
def test_orthogonal_is_procrustes_by_svd(d_in, d_out):
    """Where widths differ the narrower side is padded with zeros: the map is a block of an
    orthogonal matrix (orthonormal columns or rows)."""
    x, y = data(500, d_in, d_out, seed=1)
    out = fitted("orthogonal", x, y)
    torch.testing.assert_close(out, padded_procrustes(x, y), rtol=1e-5, atol=1e-5)
    stitch = Stitch("orthogonal", (d_in,), (d_out,))
    q = stitch.map.rotation.weight.detach().double()  # (d_out, d_in)
    small = min(d_in, d_out)
    gram = q @ q.T if d_out <= d_in else q.T @ q
    torch.testing.assert_close(gram, torch.eye(small, dtype=torch.float64), atol=1e-5,
                               rtol=0)


def brute_force_matching(x: torch.Tensor, y: torch.Tensor, per_input: int) -> torch.Tensor:
    """Every assignment of an input unit to each output (each input at most `per_input`
    times), each pair its own least-squares line: the output of the one with the least
    squared error."""
    xs, ys = x.double().numpy(), y.double().numpy()
    d_in, d_out = xs.shape[1], ys.shape[1]
    best, best_out = np.inf, None
    for source in itertools.product(range(d_in), repeat=d_out):
        if max(source.count(i) for i in range(d_in)) > per_input:
            continue
        out = np.empty_like(ys)
        for j, i in enumerate(source):
            slope, intercept = np.polyfit(xs[:, i], ys[:, j], 1)
            out[:, j] = slope * xs[:, i] + intercept
        error = ((out - ys) ** 2).sum()
        if error < best:
            best, best_out = error, out
    return torch.from_numpy(best_out)


@pytest.mark.parametrize("d_in, d_out, per_input", [(4, 4, 1), (5, 3, 1), (3, 5, 2)])
def test_permutation_is_the_least_squares_matching(d_in, d_out, per_input):
    """One-to-one where the sender is at least as wide, else a semi-matching (each input unit
    at most ceil(d_out / d_in) times): the same output as the best of every assignment."""
    x, y = data(300, d_in, d_out, seed=2)
    torch.testing.assert_close(fitted("permutation", x, y), brute_force_matching(
        x, y, per_input), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_sparse_is_the_lasso(n):
    """The lasso's objective (1 / 2N) ||Y - X W - b||^2 + 10^-n |W|_1 per output, as
    scikit-learn's coordinate descent solves it; sparser at the larger strength."""
    from sklearn.linear_model import Lasso

    x, y = data(400, 8, 3, seed=3)
    x, y = (x / x.std(0)).double(), y.double()  # the strength is on the weights: comparable
    reference = Lasso(alpha=10.0 ** -n, tol=1e-14, max_iter=1_000_000).fit(x.numpy(),
                                                                           y.numpy())
    out = fitted(f"sparse-{n}", x, y)
    torch.testing.assert_close(out, torch.from_numpy(reference.predict(x.numpy())),
                               rtol=1e-5, atol=1e-5)
    stitch = Stitch("sparse-1", (8,), (3,)).eval()
    stats = LstsqStats()
    stats.update(x.double(), y.double())
    stitch.set_affine(stats.solve(0.0))
    assert 0 < stitch.map.nonzero_fraction() < 1  # strength 0.1 zeroes some weights


def test_a_matching_needs_its_closed_form_first(digits, digits_resnet):
    """SGD cannot choose which unit an output reads: `task` and `match` alone refuse the
    permutation type in one line; `lstsq+task` chooses the matching, then trains the scales."""
    for objective in ("task", "match"):
        with pytest.raises(PlatoError, match="permutation chooses its units in closed form, "
                                             f"which objective '{objective}' skips"):
            stitch_networks(digits_resnet, digits_resnet, "layer2.0", "layer2.0", digits,
                            stitch="permutation",
                            config=StitchConfig(objective=objective, epochs=1, device="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_stitches_conv_vector_and_token_points(name, digits, digits_resnet,
                                                           digits_vit):
    """conv -> conv, vector -> vector and tokens -> tokens (the class token through the map),
    with the converging default: each cell says whether it converged and why it stopped; a
    self-stitch at a conv point recovers most of the network's accuracy; the constraint
    holds after training."""
    config = StitchConfig.fast(device="cpu")
    for net, a, b in ((digits_resnet, "layer2.0", "layer2.0"),
                      (digits_resnet, "layer2.0", "layer3.0"),
                      (digits_resnet, "pool", "pool"),
                      (digits_vit, "blocks.0", "blocks.1")):
        result, model = stitch_networks(net, net, a, b, digits, stitch=name, config=config)
        assert result.converged is not None and result.stop_reason, result
        if (a, b) == ("layer2.0", "layer2.0"):
            assert result.stitched_accuracy > 0.8 * result.receiver_accuracy, result
        stitch_map = model.stitch.map
        if name == "orthogonal":
            q = stitch_map.rotation.weight.detach().double()
            small = min(q.shape)
            gram = q @ q.T if q.shape[0] <= q.shape[1] else q.T @ q
            torch.testing.assert_close(gram, torch.eye(small, dtype=torch.float64), atol=1e-4,
                                       rtol=0)
        if name == "permutation":
            used = torch.bincount(stitch_map.source, minlength=model.stitch.in_core[0])
            assert int(used.max()) <= -(-len(stitch_map.source) // model.stitch.in_core[0])
        if name.startswith("sparse"):
            assert result.stitch_nonzero is not None and 0 < result.stitch_nonzero <= 1
            assert result.stitch_nonzero == stitch_map.nonzero_fraction()
        else:
            assert result.stitch_nonzero is None


@pytest.mark.parametrize("translator", ["orthogonal", "linear"])
@pytest.mark.parametrize("d_in, d_out", [(6, 6), (9, 5), (4, 7)])
@pytest.mark.parametrize("name", ["conv1x1", "bn-conv1x1-bn"])
def test_translate_is_latent_space_translation(name, d_in, d_out, translator):
    """The training-free translation written into an affine stitch reproduces the published
    procedure, zero-padding and all, on the anchors."""
    x, y = data(400, d_in, d_out, seed=4)
    torch.testing.assert_close(fitted(name, x, y, translator=translator),
                               maiorca_translation(x, y, translator), rtol=1e-5, atol=1e-5)


def test_a_translated_cell_takes_no_gradient_step(digits, digits_resnet):
    """objective translate: 0 steps, stopped as "translated", and only into a type that holds
    any affine map (a constrained one is refused in one line)."""
    config = StitchConfig.from_user({"objective": "translate", "anchors": 256,
                                     "device": "cpu"})
    assert config.budget == "epochs" and config.sgd_epochs == 0 and not config.converges
    result, _ = stitch_networks(digits_resnet, digits_resnet, "layer2.0", "layer2.0", digits,
                                stitch="bn-conv1x1-bn", config=config)
    assert (result.steps, result.epochs, result.stop_reason) == (0, 0, "translated")
    assert result.converged is None and result.stitched_accuracy > 0.8
    with pytest.raises(PlatoError, match="translate writes an affine map into the stitch: "
                                         "use bn-conv1x1-bn, conv1x1, plato, not 'orthogonal'"):
        stitch_networks(digits_resnet, digits_resnet, "layer2.0", "layer2.0", digits,
                        stitch="orthogonal", config=config)
