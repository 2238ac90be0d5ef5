"""`--mlflow URI`: a store logged to a local MLflow file store, read back through MLflow's own
client: every value of the long table is a metric of its cell (one step per seed), the checks
are tags, and the long table, the checks and the report are artifacts."""

import json

import pandas as pd
import pytest

from plato.report.tracker import key_part, metric_key
from plato.sweep.export import long_table, typed
from plato.sweep.store import Store
from tests.helpers import run_plato
from tests.sweep.conftest import write_spec

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def file_store_reader(monkeypatch):
    """This test's own client reads the file store (plato opts in within its own process)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def test_an_export_logs_every_cell_to_mlflow(small_run, tmp_path):
    uri = tmp_path / "mlruns"
    proc = run_plato("export", small_run, "--format", "csv", "--out", tmp_path / "t.csv",
                     "--mlflow", uri, "--json")
    assert proc.returncode == 0, proc.stderr
    (run_id,) = json.loads(proc.stdout)["mlflow_runs"]
    with Store(small_run / "results.sqlite", create=False) as store:
        table = long_table(store)
    client = mlflow.MlflowClient(tracking_uri=uri.resolve().as_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["stitch"] == "bn-conv1x1-bn"
    assert run.data.params["objective"] == "lstsq+task"
    assert run.data.tags["check.convergence"] in ("pass", "FAIL")
    values = table[table.value.notna()]
    keys = {metric_key(r) for r in values.itertuples()}
    logged = set(run.data.metrics)
    assert keys <= logged and len(keys) == len(values.drop_duplicates(
        ["metric", "sender", "sender_point", "receiver", "receiver_point", "control"]))
    assert {k for k in logged - keys} == {k for k in logged if k.startswith("check/")}
    # every value, exactly, at its seed's step (a similarity cell: step 0)
    for key, rows in values.assign(k=[metric_key(r) for r in values.itertuples()]).groupby("k"):
        history = {m.step: m.value for m in client.get_metric_history(run_id, key)}
        expected = {0 if pd.isna(r.seed) else int(r.seed): r.value for r in rows.itertuples()}
        assert history == expected, key
    files = {f.path for f in client.list_artifacts(run_id)}
    assert files == {"export.parquet", "checks.json", "report.html"}
    local = client.download_artifacts(run_id, "export.parquet", str(tmp_path))
    pd.testing.assert_frame_equal(typed(pd.read_parquet(local)), table)
    page = open(client.download_artifacts(run_id, "report.html", str(tmp_path))).read()
    assert 'id="plato-data"' in page


def test_a_sweep_logs_its_spec_when_it_ends(digits_checkpoints, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                      name="logged", controls=["trained->trained"],
                      points={"cnn": ["stem", "pool"]})
    out = run_plato("sweep", spec, "--out", tmp_path / "run", "--quiet", "--json",
                    "--mlflow", tmp_path / "mlruns", ok=True)
    (run_id,) = json.loads(out.stdout)["mlflow_runs"]
    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    run = client.get_run(run_id)
    assert run.info.run_name == "logged" and run.data.params["stitching_cells"] == "4"
    assert "stitched_accuracy/cnn.stem/cnn.stem/trained-trained" in run.data.metrics


def test_names_become_valid_keys_and_a_refusal_is_one_line(small_run, tmp_path):
    row = pd.Series({"metric": "stitched_accuracy", "sender": "a/../b", "sender_point": ".",
                     "receiver": "<x>", "receiver_point": "p:1", "control": "random->trained"})
    assert metric_key(row).startswith("stitched_accuracy/a_.._b../_x_.p_1/random-trained~")
    assert key_part("..") == "_" and len(metric_key(row.replace("a/../b", "n" * 400))) == 250
    # names that differ only in characters a key refuses keep distinct keys
    assert metric_key(row.replace("<x>", "<x]")) != metric_key(row)
    clean = row.replace({"a/../b": "cnn", ".": "stem", "<x>": "resnet", "p:1": "pool"})
    assert metric_key(clean) == "stitched_accuracy/cnn.stem/resnet.pool/random-trained"
    proc = run_plato("export", small_run, "--mlflow", "nosuch://there")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "MLflow at nosuch://there refused" in proc.stderr


def test_without_mlflow_the_flag_says_how_to_install_it(monkeypatch):
    import sys

    from plato.errors import PlatoError
    from plato.report.tracker import mlflow_module

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(PlatoError, match=r"pip install 'plato-stitch\[mlflow\]'"):
        mlflow_module()
