"""Sweeps end to end: store, resume, failures, tables, orientation, report."""

import json
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

import plato.stitch.run
from plato.errors import PlatoError
from plato.report.heatmaps import heatmap
from plato.stitch import Activations
from plato.sweep import tables as T
from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from plato.sweep.store import Store
from tests.helpers import plato_command, run_plato
from tests.sweep.conftest import poison_sender_point, write_spec


def test_sweep_fills_the_store_and_resumes(tmp_path, digits_checkpoints):
    spec = load_spec(write_spec(tmp_path / "s.yaml", digits_checkpoints))
    first = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    # resnet-1111 has 6 block points, cnn-2 has 3: (6+3)^2 cells per control, two controls.
    assert first.cells == 2 * (6 + 3) ** 2 and first.skipped == 0
    # pool (a vector) cannot feed a conv point: those cells are NaN, never 0.
    assert first.unstitchable == 2 * (1 + 1) * (5 + 2) and first.failed == 0
    assert first.done == first.cells - first.unstitchable
    again = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert again.skipped == again.cells and again.done == 0
    with Store(first.store) as store:
        cells = store.cells()
        assert len(cells) == first.cells and cells.key.is_unique and store.integrity_ok()
        assert set(cells.status) == {"done", "unstitchable"}
        assert cells[cells.status == "unstitchable"].stitched_accuracy.isna().all()
        assert set(store.networks().role) == {"trained", "random"}
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_activation_cache_setting_keeps_the_cells(tmp_path, digits_checkpoints):
    """Where the activations are cached changes no result, so it is not part of a cell's key:
    a rerun that asks for another tier finds every cell done; other recipe fields re-run."""
    recipe = {"epochs": 2, "batch_size": 256}
    common = dict(controls=["trained->trained"], objective="lstsq+task",
                  points=["stem", "layer2.0"])
    nets = {"resnet": digits_checkpoints["resnet"]}
    spec = load_spec(write_spec(tmp_path / "s.yaml", nets, recipe=recipe, **common))
    first = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert first.done == first.cells == 4
    for tier in ("off", "disk"):
        again = load_spec(write_spec(tmp_path / "s.yaml", nets,
                                     recipe={**recipe, "activation_cache": tier}, **common))
        assert run_sweep(again, tmp_path / "run", device="cpu", progress=False).skipped == 4
    other = load_spec(write_spec(tmp_path / "s.yaml", nets, recipe={**recipe, "epochs": 1},
                                 name="tiny-1-epoch", **common))  # another spec, other cells
    assert run_sweep(other, tmp_path / "run", device="cpu", progress=False).done == 4


def test_non_finite_cell_is_recorded_and_the_sweep_goes_on(tmp_path, digits_checkpoints,
                                                           monkeypatch):
    poison_sender_point(monkeypatch, "layer1.0")  # a genuinely non-finite activation there
    spec = load_spec(write_spec(tmp_path / "s.yaml", {"resnet": digits_checkpoints["resnet"]},
                                controls=["trained->trained"], objective="task",
                                points=["stem", "layer1.0", "layer2.0"],
                                recipe={"epochs": 1, "batch_size": 256}))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert summary.failed == 3 and summary.done == 6
    with Store(summary.store) as store:
        failed = store.cells().query("status == 'failed'")
    assert set(failed.sender_point) == {"layer1.0"}
    assert all(r.startswith("non-finite loss") and "step 1" in r for r in failed.reason)
    monkeypatch.setattr(plato.stitch.run, "Activations", Activations)
    plain = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert plain.skipped == 9  # failures are not retried unless asked
    retried = run_sweep(spec, tmp_path / "run", device="cpu", progress=False,
                        retry_failed=True)
    assert retried.done == 3 and retried.failed == 0


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, digits_checkpoints):
    spec_path = write_spec(tmp_path / "s.yaml", digits_checkpoints, objective="task",
                           controls=["trained->trained"],
                           recipe={"epochs": 1, "batch_size": 128})
    out = tmp_path / "run"
    cmd = plato_command("sweep", spec_path, "--out", out, "--device", "cpu", "--quiet", "--json")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 8:
        time.sleep(0.3)
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=5)
                done = con.execute("SELECT count(*) FROM cells").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                pass
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(db) as store:
        assert store.integrity_ok()
        before = store.cells().set_index("key").finished
    assert 8 <= len(before) < 81
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["cells"] == 81 and summary["skipped"] == len(before)
    with Store(db) as store:
        after = store.cells().set_index("key")
        assert store.integrity_ok()
    assert len(after) == 81 and after.index.is_unique  # every cell exactly once
    pd.testing.assert_series_equal(after.finished.loc[before.index], before)  # not redone


def _fake_store(path):
    """A store with known values: value = 10 * sender_index + receiver_index (+ seed / 100)."""
    from plato.sweep.jobs import Job

    with Store(path) as store:
        for seed in (0, 1):
            for si, sp in enumerate(["s0", "s1", "s2"]):
                for ri, rp in enumerate(["r0", "r1"]):
                    for control, offset in (("trained->trained", 0.0),
                                            ("random->trained", -0.5)):
                        job = Job(f"{seed}{sp}{rp}{control}", "fake", "A", "B", control, seed,
                                  sp, si, rp, ri)
                        value = (10 * si + ri + seed / 100) / 100 + offset + 0.5
                        stitchable = not (sp == "s2" and rp == "r0")
                        store.record_cell(
                            job, "done" if stitchable else "unstitchable",
                            result={"stitched_accuracy": value if stitchable else float("nan"),
                                    "receiver_accuracy": 0.9} if stitchable else None,
                            started=time.time())


def test_orientation_and_heatmap_labels(tmp_path):
    _fake_store(tmp_path / "fake.sqlite")
    with Store(tmp_path / "fake.sqlite") as store:
        cells = T.load_cells(store)
    mean = T.stat_table(cells, "A", "B")
    assert list(mean.index) == ["s0", "s1", "s2"] and list(mean.columns) == ["r0", "r1"]
    assert mean.loc["s1", "r0"] == pytest.approx((10 + 0.005) / 100 + 0.5)
    assert mean.loc["s0", "r1"] == pytest.approx((1 + 0.005) / 100 + 0.5)
    assert np.isnan(mean.loc["s2", "r0"])  # not stitchable: NaN, never 0
    n = T.stat_table(cells, "A", "B", stat="n")
    assert n.loc["s0", "r0"] == 2 and n.loc["s2", "r0"] == 0
    std = T.stat_table(cells, "A", "B", stat="std")
    assert std.loc["s1", "r1"] == pytest.approx(np.std([0.6100, 0.6101], ddof=1), abs=1e-9)
    diff = T.debiased_table(cells, "A", "B")
    assert diff.loc["s1", "r1"] == pytest.approx(0.5)
    norm = T.debiased_table(cells, "A", "B", normalized=True)
    random_value = mean.loc["s1", "r1"] - 0.5
    assert norm.loc["s1", "r1"] == pytest.approx(0.5 / (0.9 - random_value))
    latest = T.latest_stitchable(mean, receiver_acc=0.6, threshold=1.0)
    assert latest.to_dict() == {"s0": None, "s1": "r1", "s2": "r1"}

    fig = heatmap(mean, tmp_path / "h.png", "test")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["s0", "s1", "s2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["r0", "r1"]
    shown = ax.images[0].get_array()
    assert shown[1, 0] == pytest.approx(mean.loc["s1", "r0"]) and shown.mask[2, 0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert texts[(1, 0)] == f"{mean.loc['s1', 'r0']:.2f}" and (2, 0) not in texts
    marks = mean < 0.55  # circled cells sit in their cell's upper right corner
    circles = heatmap(mean, tmp_path / "m.png", "test", marks=marks).axes[0].collections[0]
    centres = {(round(y), round(x)) for x, y in circles.get_offsets()}
    assert centres == {(i, j) for i, row in enumerate(marks.to_numpy())
                       for j, v in enumerate(row) if v}


@pytest.mark.slow
def test_report_and_exports(tmp_path, digits_checkpoints):
    spec_path = write_spec(tmp_path / "s.yaml", digits_checkpoints, name="tiny")
    summary = run_sweep(load_spec(spec_path), tmp_path / "run", device="cpu", progress=False)
    from plato.report import write_report

    # A spec cannot be named so any more (a name names files); a store from elsewhere can be.
    with sqlite3.connect(summary.store) as db:
        for table, column in (("sweeps", "spec"), ("cells", "spec"), ("networks", "spec")):
            db.execute(f"UPDATE {table} SET {column} = '<script>alert(1)</script>'")

    stitch = load_spec(spec_path).stitch  # the registry's description of the cells' stitch
    for static in (False, True):  # the interactive page, then the static one
        text = write_report(summary.store, tmp_path / "report", static=static).read_text()
        assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
        assert f"stitch {stitch}: BatchNorm, 1x1 conv with bias, BatchNorm" in text
    pngs = list((tmp_path / "report" / "heatmaps").glob("*.png"))
    # 4 pairs x (2 controls + 2 debiased tables)
    assert len(pngs) == 16 and text.count("data:image/png;base64,") == 16
    proc = run_plato("table", summary.store, "--csv", tmp_path / "t.csv", "--parquet",
                     tmp_path / "t.parquet", "--pair", "resnet", "cnn", "--latest", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["tables"]
    assert len(out) == 1 and out[0]["rows"][0] == "stem" and out[0]["columns"][-1] == "pool"
    assert out[0]["values"][-1][0] is None  # pool -> stem: not stitchable, null in JSON
    csv = pd.read_csv(tmp_path / "t.csv")
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert len(csv) == len(parquet) > 0 and set(csv.metric) >= {"stitched_accuracy"}


def test_kept_stitches_hold_only_the_stitch(tmp_path, digits_checkpoints):
    from safetensors.torch import load_file

    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                                controls=["trained->trained"], keep_stitches=True))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    with Store(summary.store) as store:
        cells = store.cells().query("status == 'done'")
    assert len(cells) == summary.done > 0 and cells.stitch_file.notna().all()
    for row in cells.itertuples():
        tensors = load_file(tmp_path / "run" / row.stitch_file)
        assert all(k.startswith(("map.", "adapter.")) for k in tensors)
        n_params = sum(t.numel() for k, t in tensors.items()
                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
        assert n_params == row.stitch_parameters


def test_bad_train_entry_names_the_field(tmp_path):
    from plato.sweep.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match=r"spec field 'networks.a.train.optimizer': .*optimizer "
                                        r"'rms'"):
        spec = parse_spec({"networks": {"a": {"train": {"model": "cnn-2",  # refused here,
                                                        "optimizer": "rms"}}}})  # not later
        run_sweep(spec, tmp_path / "run", device="cpu", progress=False)


def test_networks_can_train_on_more_than_the_stitches_see(tmp_path):
    """`train_subset: all` in a train entry trains that network on the whole training split,
    while the cells use the spec's subset (a reference study: networks from all 50,000
    CIFAR-10 images, stitches fitted on 10,000); without it the network gets the subset."""
    from plato.checkpoint import load_checkpoint
    from plato.sweep.spec import parse_spec

    train = {"model": "cnn-2", "width": 4, "epochs": 1, "batch_size": 256}
    spec = parse_spec({"dataset": {"name": "digits", "train_subset": 300, "test_subset": 200},
                       "networks": {"whole": {"train": {**train, "train_subset": "all"}},
                                    "part": {"train": {**train, "train_subset": 600}},
                                    "subset": {"train": train}},
                       "pairs": "self", "objective": "lstsq"})
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert summary.failed == 0 and summary.done > 0
    trained = {p.name.split("-")[0]: load_checkpoint(p).meta["dataset"]
               for p in (tmp_path / "run" / "networks").glob("*.ckpt")}
    assert trained == {"whole": "digits", "part": "digits[train=600,test=None,seed=0]",
                       "subset": "digits[train=300,test=200,seed=0]"}
    with Store(tmp_path / "run" / "results.sqlite") as store:
        assert store.sweeps()["dataset"].tolist() == ["digits[train=300,test=200,seed=0]"]


@pytest.mark.slow
def test_similarity_measures_beside_stitching(tmp_path, digits_checkpoints):
    """cka and procrustes in a spec: stored once per (pair, control), oriented like the
    stitching tables, equal to a direct grid, in the report with a scatter against stitching."""
    import plato
    from plato.checkpoint import load_checkpoint
    from plato.report import write_report
    from plato.similarity import SimilarityConfig, similarity_grid

    spec = load_spec(write_spec(tmp_path / "s.yaml", digits_checkpoints,
                                measures=["stitch", "cka", "procrustes"],
                                similarity={"collect": 200, "batch_size": 128}))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert summary.similarity_tables == 4 * 2  # 4 ordered pairs x 2 controls
    assert run_sweep(spec, tmp_path / "run", device="cpu",
                     progress=False).similarity_tables == 0  # resumed: nothing recomputed
    with Store(summary.store) as store:
        sims, cells = T.load_similarities(store), T.load_cells(store)
        assert len(store.similarities()) == 2 * 2 * (6 + 3) ** 2
    cka = T.stat_table(sims, "resnet", "cnn", "trained->trained", "cka")
    acc = T.stat_table(cells, "resnet", "cnn", "trained->trained", "stitched_accuracy")
    assert list(cka.index) == list(acc.index) and list(cka.columns) == list(acc.columns)
    direct = similarity_grid(load_checkpoint(digits_checkpoints["resnet"]).model,
                             load_checkpoint(digits_checkpoints["cnn"]).model,
                             plato.load_dataset("digits"), ["cka"],
                             SimilarityConfig(batch_size=128), device="cpu")["cka"]
    np.testing.assert_allclose(cka.to_numpy(), direct.values, atol=1e-12)
    page = write_report(summary.store, tmp_path / "report", static=True).read_text()
    assert page.count("Spearman rank correlation") == 4 * 2 * 2  # pairs x controls x measures
    proc = run_plato("table", summary.store, "--metric", "procrustes", "--pair", "cnn", "cnn",
                     "--json")
    assert proc.returncode == 0, proc.stderr
    values = np.array(json.loads(proc.stdout)["tables"][0]["values"], dtype=float)
    np.testing.assert_allclose(np.diag(values), 0.0, atol=1e-5)  # self-pair: distance 0


@pytest.mark.slow
def test_every_cell_carries_its_interval_and_outcomes(tmp_path, digits_checkpoints):
    """A cell stores its test examples, Wilson's interval of its accuracy and which examples
    it got right; `plato table --ci` prints the interval, and the debiased table the paired
    interval of trained minus its control, from those outcomes."""
    from plato.stats import accuracy_interval, paired_interval

    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]}))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    with Store(summary.store) as store:
        cells = T.load_cells(store).query("status == 'done'")
    assert len(cells) == summary.done > 0 and (cells.test_examples == 360).all()
    for row in cells.to_dict("records"):
        right = T.outcomes(row)
        assert right.mean() == pytest.approx(row["stitched_accuracy"], abs=1e-12)
        assert (row["accuracy_low"], row["accuracy_high"]) == pytest.approx(
            accuracy_interval(int(right.sum()), 360))
    out = json.loads(run_plato("table", summary.store, "--ci", "--json",
                               ok=True).stdout)["tables"][0]
    trained = cells.query("control == 'trained->trained'").set_index(
        ["sender_point", "receiver_point"])
    i, j = out["rows"].index("stem"), out["columns"].index("block1")
    assert out["low"][i][j] == pytest.approx(trained.loc[("stem", "block1")].accuracy_low)
    debiased = json.loads(run_plato("table", summary.store, "--ci", "--json", "--debiased",
                                    "diff", "--control", "random->trained",
                                    ok=True).stdout)["tables"][0]
    random = cells.query("control == 'random->trained'").set_index(
        ["sender_point", "receiver_point"])
    expected = paired_interval(T.outcomes(trained.loc[("stem", "block1")]),
                               T.outcomes(random.loc[("stem", "block1")]))
    assert (debiased["low"][i][j], debiased["high"][i][j]) == pytest.approx(expected)
    assert debiased["low"][i][j] <= debiased["values"][i][j] <= debiased["high"][i][j]
    # one number for the pair: the mean along relative depth (here the diagonal), with the
    # interval of each example's outcome averaged over those cells (one seed: Student t)
    from plato.similarity.model_level import depth_matched
    from plato.stats import mean_interval

    values = np.array(out["values"], dtype=float)
    matched = [(out["rows"][a], out["columns"][b]) for a, b in depth_matched(*values.shape)
               if np.isfinite(values[a, b])]
    for table, control in ((out, None), (debiased, random)):
        per_example = np.mean([T.outcomes(trained.loc[c]).astype(float)
                               - (0 if control is None else T.outcomes(control.loc[c]))
                               for c in matched], axis=0)  # (examples,)
        depth = table["scores"]["depth_mean"]
        assert depth["value"] == pytest.approx(per_example.mean())
        assert (depth["low"], depth["high"]) == pytest.approx(mean_interval(per_example))
        assert depth["cells"] == len(matched) and table["scores"]["max"]["value"] == \
            pytest.approx(np.nanmax(np.array(table["values"], dtype=float)))
    printed = run_plato("table", summary.store, ok=True).stdout
    assert "the mean along relative depth" in printed and "the most similar cell (" in printed
    # the library gives what the command prints (the CLI only parses, calls and prints)
    from plato.sweep.views import TableQuery, table_views

    query = TableQuery(ci=True, debiased="diff", control="random->trained")
    assert table_views(summary.store, query).views[0].to_dict() == debiased
    with pytest.raises(PlatoError, match="--debiased must be diff or normalized"):
        TableQuery(debiased="both")
    from plato.report import write_report

    with Store(summary.store) as store:
        low, high = T.debiased_interval(T.load_cells(store), "cnn", "cnn")
    within = int(((low <= 0) & (high >= 0)).to_numpy().sum())
    page = write_report(summary.store, tmp_path / "report", static=True).read_text()
    assert f"Circled ({within}): not distinguishable from the random sender" in page


def test_a_store_from_before_intervals_gains_the_columns(tmp_path):
    """An older store (no interval columns) opens, gains them empty, and its tables print
    their intervals as n/a, never a crash."""
    from plato.sweep.store import ADDED_COLUMNS, SCHEMA

    old_schema = SCHEMA
    for name, kind in ADDED_COLUMNS["cells"].items():
        old_schema = "\n".join(line for line in old_schema.splitlines()
                               if not line.strip().startswith(f"{name} {kind}"))
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO cells (key, spec, sender, receiver, control, seed, sender_point, "
               "sender_index, receiver_point, receiver_index, status, stitched_accuracy, "
               "receiver_accuracy) VALUES ('k', 's', 'A', 'A', 'trained->trained', 0, 'p', 0, "
               "'p', 0, 'done', 0.9, 0.9)")
    db.commit()
    assert "accuracy_low" not in {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    db.close()
    proc = run_plato("table", path, "--ci")
    assert proc.returncode == 0, proc.stderr
    assert "0.900 [n/a]" in proc.stdout and "[n/a]: no interval" in proc.stdout
    with Store(path) as store:
        assert {"accuracy_low", "correct"} <= set(store.cells().columns)


def test_similarity_null_in_a_sweep(tmp_path, digits_checkpoints):
    """`similarity: {permutations: k}` stores each cell's p-value and calibrated score beside
    its value (new keys: a store without the null keeps its cells); `plato table` reads them
    as MEASURE_p and MEASURE_calibrated, and the family's as MEASURE_fw_p."""
    nets = {"cnn": digits_checkpoints["cnn"]}
    common = dict(controls=["trained->trained"], measures=["cka"])
    plain = load_spec(write_spec(tmp_path / "s.yaml", nets, **common))
    assert run_sweep(plain, tmp_path / "run", device="cpu", progress=False).similarity_tables
    null = load_spec(write_spec(tmp_path / "s.yaml", nets, similarity={"permutations": 9,
                                                                      "null_examples": 100},
                                **common))
    assert run_sweep(null, tmp_path / "run", device="cpu", progress=False).similarity_tables == 1
    assert run_sweep(plain, tmp_path / "run", device="cpu",
                     progress=False).similarity_tables == 0  # the first cells are kept
    with Store(tmp_path / "run" / "results.sqlite") as store:
        rows = store.similarities()
    with_null = rows[rows.permutations == 9]
    assert len(with_null) == len(rows) / 2 == 9
    assert with_null.p_value.between(0.1, 1).all() and rows.permutations.isna().sum() == 9
    proc = run_plato("table", tmp_path / "run" / "results.sqlite", "--metric", "cka_p",
                     "--json")
    assert proc.returncode == 0, proc.stderr
    values = np.array(json.loads(proc.stdout)["tables"][0]["values"], dtype=float)
    np.testing.assert_allclose(np.diag(values), 0.1)  # a layer against itself: p = 1/(k+1)
    from plato.report import write_report

    family = np.array(json.loads(run_plato(
        "table", tmp_path / "run" / "results.sqlite", "--metric", "cka_fw_p", "--json",
        ok=True).stdout)["tables"][0]["values"], dtype=float)
    assert (family >= values - 1e-12).all()  # against every cell's best: never smaller
    assert with_null.fw_threshold.nunique() == 1  # one threshold per table
    # one number for the pair, with the same shuffles: a network against itself is identical
    # along its depth (CKA 1 on the diagonal), and beats every shuffle
    with Store(tmp_path / "run" / "results.sqlite") as store:
        stored = store.model_scores().set_index("score")
    assert sorted(stored.index) == ["depth_mean", "max"] and (stored.permutations == 9).all()
    assert stored.loc["depth_mean", "value"] == pytest.approx(1.0)
    assert stored.loc["depth_mean", "calibrated"] == pytest.approx(1.0)
    assert list(stored.p_value) == pytest.approx([0.1, 0.1]) and (stored.examples == 100).all()
    shown = json.loads(run_plato("table", tmp_path / "run" / "results.sqlite", "--metric",
                                 "cka", "--json", ok=True).stdout)["tables"][0]["scores"]
    assert shown["depth_mean"]["p_value"] == pytest.approx(0.1)
    assert shown["max"]["value"] == pytest.approx(stored.loc["max", "value"])
    page = write_report(tmp_path / "run" / "results.sqlite", tmp_path / "report",
                        static=True).read_text()
    circled = int((family > 0.05).sum())  # the report marks by the family-wise p
    assert f"Circled ({circled}): family-wise p (against the most similar cell" in page


@pytest.mark.slow
def test_converging_cells_say_so_everywhere(tmp_path, digits_checkpoints):
    """With `budget: converge` every fitted cell stores whether it converged, its steps and
    examples; `plato table --csv` carries them, `plato check` counts them, the report crosses
    the cells that did not converge and counts them."""
    recipe = {"budget": "converge", "holdout": 200, "check_every": 5, "patience": 2,
              "min_steps": 5, "max_steps": 25, "batch_size": 128}
    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                                controls=["trained->trained"], objective="lstsq+task",
                                recipe=recipe))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    with Store(summary.store) as store:
        cells = T.load_cells(store).query("status == 'done'")
    assert len(cells) == summary.done and cells.converged.isin([0, 1]).all()
    assert (cells.steps <= 25).all() and (cells.examples_seen == 128 * cells.steps).all()
    assert (cells[cells.converged == 0].steps == 25).all()  # not converged: cut off
    run_plato("table", summary.store, "--csv", tmp_path / "t.csv", ok=True)
    csv = pd.read_csv(tmp_path / "t.csv")
    share = csv[csv.metric == "converged"]["mean"].dropna()  # unstitchable cells: NaN
    assert len(share) == len(cells) and share.between(0, 1).all()
    out = json.loads(run_plato("check", summary.store, "--json").stdout)
    check = next(c for c in out["checks"] if c["name"] == "convergence")
    assert check["value"] == pytest.approx(cells.converged.mean(), abs=1e-4)
    from plato.report import write_report

    page = write_report(summary.store, tmp_path / "report", static=True).read_text()
    missed = int((cells.converged == 0).sum())
    assert f"{missed} not converged" in page
    assert (f"Crossed ({missed}): a fit that did not converge" in page) == (missed > 0)


def test_a_remote_worker_sees_how_a_network_was_trained(tmp_path, digits_checkpoints):
    """A worker rebuilds a network from its payload (Ray): the recipe travels with it, so
    `label_smoothing: receiver` fits the same loss there as on the driver."""
    from plato.checkpoint import load_checkpoint, save_checkpoint
    from plato.stitch import StitchedModel
    from plato.sweep.networks import Network

    ckpt = load_checkpoint(digits_checkpoints["cnn"])
    path = save_checkpoint(tmp_path / "smoothed.ckpt", ckpt.model,
                           recipe={"label_smoothing": 0.1}).path
    for recipe, smoothing in ((ckpt.meta.get("recipe"), 0.0), ({"label_smoothing": 0.1}, 0.1)):
        net = load_checkpoint(path if smoothing else digits_checkpoints["cnn"]).model
        assert net.plato_recipe == recipe
        remote = Network.from_payload(Network("cnn", "trained", net, "id", 0.9).payload())
        assert remote.model.plato_recipe == recipe
        stitched = StitchedModel(remote.graph, 1, "bn-conv1x1-bn", remote.graph, 1)
        assert stitched.receiver_label_smoothing == smoothing


@pytest.mark.slow
def test_seeds_that_agree_still_leave_the_test_examples_noise(tmp_path, digits_checkpoints):
    """Two seeds of a closed-form stitch give the same cell twice: a t interval over the seeds
    was [x, x] (zero width: a finding from one test set). The interval is over the seeds and
    the test examples, crossed, says so, and is as wide as one seed's interval over the
    examples (Wilson's)."""
    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                                controls=["trained->trained"], seeds=[0, 1],
                                points=["stem", "block1"]))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    out = json.loads(run_plato("table", summary.store, "--ci", "--json",
                               ok=True).stdout)["tables"][0]
    assert "the seeds and the test examples, crossed" in out["interval"]
    assert "2 seeds x 360 test examples" in out["interval"]
    with Store(summary.store) as store:
        cells = T.load_cells(store).query("status == 'done'")
    for row in out["rows"]:
        for col in out["columns"]:
            i, j = out["rows"].index(row), out["columns"].index(col)
            value, low, high = out["values"][i][j], out["low"][i][j], out["high"][i][j]
            if value is None:
                continue
            seeds = cells.query("sender_point == @row and receiver_point == @col")
            assert seeds.stitched_accuracy.nunique() == 1  # the seeds agree
            one = seeds.iloc[0]
            assert low < value < high and high - low > 0.02
            assert high - low >= 0.9 * (one.accuracy_high - one.accuracy_low)
    run_plato("table", summary.store, "--csv", tmp_path / "t.csv", ok=True)
    csv = pd.read_csv(tmp_path / "t.csv")  # each exported cell names its interval's kind
    assert set(csv[csv.metric == "stitched_accuracy"].dropna(subset=["mean"]).interval) == \
        {"crossed"}
    assert set(csv[csv.metric == "activation_cka"].dropna(subset=["mean"]).interval) == \
        {"seeds"}
