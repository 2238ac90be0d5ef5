"""The capacity table: one pair of cut points stitched by families of growing capacity, in
the order the families nest (affine >= orthogonal >= a matching; accuracy rising with rank),
and `plato capacity` writing its plot, table and page."""

import json

import pandas as pd
import pytest

from plato.stitch import StitchConfig
from plato.stitch.capacity import capacity_stitches, capacity_table
from tests.helpers import run_plato
from tests.stitch.conftest import trained


def test_the_default_stitches_grow_in_capacity():
    assert capacity_stitches(16, 32) == ["permutation", "orthogonal", "sparse-1", "sparse-2",
                                         "sparse-3", "lowrank-1", "lowrank-2", "lowrank-4",
                                         "lowrank-8", "conv1x1"]
    assert capacity_stitches(3, 3)[-3:] == ["lowrank-1", "lowrank-2", "conv1x1"]


@pytest.mark.slow
def test_capacity_orders_the_families_on_digits(digits):
    """Two seeds of resnet-1111 at layer2.0 (16 channels), the fast converging setting: the
    affine map is at least as good as the orthogonal one, which beats a matching of units
    (different seeds do not share units); accuracy rises with the rank."""
    a, b = trained("resnet-1111", 0, digits, width=8), trained("resnet-1111", 1, digits,
                                                                 width=8)
    rows = {r.stitch: r for r in capacity_table(a, b, "layer2.0", "layer2.0", digits,
                                                config=StitchConfig.fast(device="cpu"))}
    assert list(rows) == ["permutation", "orthogonal", "sparse-1", "sparse-2", "sparse-3",
                          "lowrank-1", "lowrank-2", "lowrank-4", "lowrank-8", "conv1x1"]
    affine, orthogonal, matching = rows["conv1x1"], rows["orthogonal"], rows["permutation"]
    assert affine.accuracy >= orthogonal.accuracy_low, (affine, orthogonal)
    assert orthogonal.accuracy_low > matching.accuracy_high, (orthogonal, matching)
    ranks = [rows[f"lowrank-{r}"].accuracy for r in (1, 2, 4, 8)] + [affine.accuracy]
    assert all(b >= a - 0.01 for a, b in zip(ranks, ranks[1:], strict=False)), ranks
    assert ranks[-1] > ranks[0] + 0.05, ranks
    # free parameters: a matching's scales and biases; the orthogonal map's Stiefel manifold
    assert matching.free_parameters == 2 * 16 and affine.free_parameters == 16 * 16 + 16
    assert orthogonal.free_parameters == 16 * 16 - 16 * 17 // 2 + 1 + 16
    assert rows["sparse-1"].free_parameters <= affine.free_parameters
    assert all(r.converged is not None for r in rows.values())


@pytest.mark.slow
def test_plato_capacity_writes_its_plot_table_and_page(tmp_path, digits_checkpoints):
    out = tmp_path / "cap"
    proc = run_plato("capacity", digits_checkpoints["resnet"], digits_checkpoints["resnet"],
                     "--from", "layer2.0", "--to", "layer2.0", "--stitch", "permutation",
                     "--stitch", "conv1x1", "--out", out, "--fast", "--device", "cpu",
                     "--quiet", "--json", ok=True)
    rows = json.loads(proc.stdout)["rows"]
    assert [r["stitch"] for r in rows] == ["permutation", "conv1x1"]
    table = pd.read_csv(out / "capacity.csv")
    assert list(table.stitch) == ["permutation", "conv1x1"]
    assert table.accuracy.tolist() == [r["accuracy"] for r in rows]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png") == 1 and "permutation" in page
    assert (out / "capacity.png").stat().st_size > 1000
