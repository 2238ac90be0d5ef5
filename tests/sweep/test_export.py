"""`plato export`: a store as one long-form table in CSV, Parquet and JSON, read back exactly
(every value as stored, every column in its type), one row per cell and metric."""

import json

import pandas as pd
import pytest

from plato.errors import PlatoError
from plato.sweep.export import COLUMNS, TYPES, long_table, read_export
from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from plato.sweep.store import METRICS, Store
from tests.helpers import run_plato
from tests.sweep.conftest import write_spec


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits_checkpoints):
    """A real sweep on digits: two networks, two controls, two seeds, the closed form, linear
    CKA with a small permutation null."""
    folder = tmp_path_factory.mktemp("export")
    spec = write_spec(folder / "s.yaml", {"cnn": digits_checkpoints["cnn"],
                                          "resnet": digits_checkpoints["resnet"]},
                      pairs=[["cnn", "resnet"], ["resnet", "resnet"]], seeds=[0, 1],
                      points={"cnn": ["stem", "pool"], "resnet": ["stem", "layer2.0", "pool"]},
                      measures=["stitch", "linear_cka"], similarity={"permutations": 9})
    run_sweep(load_spec(spec), folder / "run", device="cpu", progress=False)
    return folder / "run"


def test_the_long_table_holds_every_cell_and_metric_as_stored(finished_run):
    with Store(finished_run / "results.sqlite", create=False) as store:
        table = long_table(store)
        cells, sims = store.cells(), store.similarities()
    assert list(table.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == {c: TYPES[c] for c in COLUMNS}
    stitch, similarity = table[table.kind == "stitch"], table[table.kind == "similarity"]
    # one row per stored stitching cell and metric it holds (a NaN accuracy: not stitchable)
    done = cells[cells.status != "failed"]
    held = sum(int(done[m].notna().sum()) for m in METRICS if m != "stitched_accuracy")
    assert len(stitch) == held + len(done) and len(similarity) == len(sims)
    accuracy = stitch[stitch.metric == "stitched_accuracy"].set_index("key")
    stored = done.set_index("key")
    assert (accuracy.value.isna() == (stored.loc[accuracy.index].status == "unstitchable")).all()
    for key, row in accuracy[accuracy.value.notna()].iterrows():
        cell = stored.loc[key]
        assert row.value == cell.stitched_accuracy and row.seed == cell.seed
        assert row.n == cell.test_examples and row.interval == "wilson (test examples)"
        assert (row.low, row.high) == (cell.accuracy_low, cell.accuracy_high)
    measured = similarity.set_index("key")
    for key, row in sims.set_index("key").iterrows():
        assert measured.loc[key, "value"] == row.value
        assert measured.loc[key, "p_value"] == row.p_value and pd.notna(row.p_value)
    assert set(stitch.objective) == {"lstsq"} and set(stitch.stitch) == {"bn-conv1x1-bn"}
    assert similarity.seed.isna().all() and similarity.objective.isna().all()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_each_format_reads_back_exactly(finished_run, tmp_path, fmt):
    out = tmp_path / f"cells.{fmt}"
    said = json.loads(run_plato("export", finished_run, "--format", fmt, "--out", out,
                                "--json", ok=True).stdout)
    with Store(finished_run / "results.sqlite", create=False) as store:
        table = long_table(store)
    assert said == {"export": str(out), "rows": len(table), "format": fmt}
    pd.testing.assert_frame_equal(read_export(out), table, check_exact=True)


def test_a_wrong_format_or_run_is_one_line(tmp_path, finished_run):
    failed = run_plato("export", finished_run, "--format", "xlsx", ok=False)
    assert failed.stderr.strip().splitlines()[-1] == (
        "plato: error: format 'xlsx' is not one of csv, parquet, json")
    missing = run_plato("export", tmp_path / "nothing", ok=False)
    assert "does not exist: run `plato sweep` first" in missing.stderr


def test_an_interactive_figure_shows_the_stored_values(finished_run):
    """plato.report.figure: a Plotly heatmap of a table whose cells are the stored means and
    whose hover data are each cell's interval, seeds and converged share (what a notebook
    shows)."""
    import numpy as np

    from plato.report import figure
    from plato.sweep.tables import load_cells, stat_table

    fig = figure(finished_run / "results.sqlite", "cnn", "resnet", metric="stitched_accuracy")
    heat = fig.data[0]
    with Store(finished_run / "results.sqlite", create=False) as store:
        cells = load_cells(store)
    mean = stat_table(cells, "cnn", "resnet")
    low, high = (stat_table(cells, "cnn", "resnet", stat=s) for s in ("low", "high"))
    assert list(heat.y) == list(mean.index) and list(heat.x) == list(mean.columns)
    np.testing.assert_array_equal(np.asarray(heat.z, dtype=float), mean.to_numpy())
    custom = np.asarray(heat.customdata, dtype=float)
    np.testing.assert_array_equal(custom[..., 0], low.to_numpy())
    np.testing.assert_array_equal(custom[..., 1], high.to_numpy())
    assert np.nanmax(custom[..., 2]) == 2  # two seeds
    assert "95% interval" in heat.hovertemplate and fig.layout.title.text.startswith("cnn")
    with pytest.raises(PlatoError, match="no cells for cnn -> cnn"):
        figure(finished_run / "results.sqlite", "cnn", "cnn")
