"""The interactive report's page, read as data: every table and every cell it carries equals
the store, it needs no network, and names in it are data, never markup. (What a browser shows
of it: test_browser.py.)"""

import base64
import json
import re
import shutil
import sqlite3

import numpy as np
import pytest

from plato.report import write_report
from plato.report.explore import cell_id
from plato.sweep.store import Store
from plato.sweep.tables import (
    cell_interval,
    debiased_table,
    load_cells,
    load_similarities,
    stat_table,
)
from tests.sweep.test_checks import fake_store

pytestmark = pytest.mark.slow


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="plato-data">(.*?)</script>', page,
                      re.S)
    return json.loads(found.group(1))


def as_array(values) -> np.ndarray:
    """A figure's array as Plotly writes it: typed binary (`bdata`: exact) or nested lists."""
    if isinstance(values, dict):
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return flat.reshape([int(n) for n in str(values["shape"]).split(",")]).astype(float)
    return np.array(values, dtype=float)


@pytest.fixture(scope="module")
def report(small_run, tmp_path_factory):
    path = write_report(small_run / "results.sqlite", tmp_path_factory.mktemp("page"))
    with Store(small_run / "results.sqlite", create=False) as store:
        cells, sims = load_cells(store), load_similarities(store)
    return path, path.read_text(), cells, sims


def test_every_table_on_the_page_is_the_stored_table(report):
    _, page, cells, sims = report
    data = page_data(page)
    kinds = {(t["sender"], t["receiver"], t["metric"], t["control"], t["view"])
             for t in data["tables"]}
    for pair in (("cnn", "resnet"), ("resnet", "resnet")):
        for control in ("trained->trained", "random->trained"):
            assert (*pair, "stitched_accuracy", control, "mean") in kinds
            assert (*pair, "linear_cka", control, "measure") in kinds
        assert (*pair, "debiased stitched_accuracy", "random->trained", "debiased") in kinds
    for t in data["tables"]:
        heat = t["figure"]["data"][0]
        source = sims if t["metric"] == "linear_cka" else cells
        if t["view"] in ("mean", "measure"):
            expected = stat_table(source, t["sender"], t["receiver"], t["control"], t["metric"])
        else:
            expected = debiased_table(cells, t["sender"], t["receiver"], "stitched_accuracy",
                                      t["control"], normalized=t["view"] == "normalized")
        assert t["rows"] == list(expected.index) and t["columns"] == list(expected.columns)
        np.testing.assert_array_equal(as_array(heat["z"]), expected.to_numpy())  # exactly
        if t["view"] == "mean" and t["metric"] == "stitched_accuracy":
            low = stat_table(cells, t["sender"], t["receiver"], t["control"], stat="low")
            custom = as_array(heat["customdata"])
            np.testing.assert_array_equal(custom[..., 0], low.to_numpy())
            assert np.nanmax(custom[..., 2]) == 2  # two seeds


def test_every_cell_on_the_page_is_the_stored_cell(report):
    _, page, cells, sims = report
    details = page_data(page)["cells"]
    places = cells.groupby(["sender", "receiver", "sender_point", "receiver_point"])
    assert len(details) == len(places)
    for (s, r, sp, rp), group in places:
        cell = details[cell_id(s, r, sp, rp)]
        by_control = {c["control"]: c for c in cell["stitching"]}
        assert set(by_control) == {"trained->trained", "random->trained"}
        for control, rows in group.groupby("control"):
            shown = by_control[control]
            accuracy = rows.stitched_accuracy.dropna()
            if accuracy.empty:  # not stitchable: nothing to show but that
                assert shown["stitched_accuracy"] is None
                continue
            assert shown["stitched_accuracy"] == accuracy.mean()
            assert (shown["low"], shown["high"]) == cell_interval(rows, "stitched_accuracy")
            assert shown["n"] == 2 and shown["converged"] == int(rows.converged.sum())
            for seed in shown["seeds"]:
                row = rows[rows.seed == seed["seed"]].iloc[0]
                assert seed["stitched_accuracy"] == row.stitched_accuracy
                assert seed["steps"] == row.steps and seed["converged"] == row.converged
                assert seed["receiver_distance"] == row.receiver_distance
                assert seed["stop_reason"] == json.loads(row.result)["stop_reason"]
        if by_control["trained->trained"]["stitched_accuracy"] is not None:
            (debiased,) = cell["debiased"]
            difference = (by_control["trained->trained"]["stitched_accuracy"]
                          - by_control["random->trained"]["stitched_accuracy"])
            assert debiased["difference"] == pytest.approx(difference, abs=1e-15)
            assert debiased["low"] < debiased["difference"] < debiased["high"]
        for measure in cell["similarity"]:
            row = sims[(sims.sender == s) & (sims.receiver == r) & (sims.sender_point == sp)
                       & (sims.receiver_point == rp) & (sims.control == measure["control"])]
            assert measure["value"] == row.linear_cka.iloc[0]
            assert measure["fw_p_value"] == row.linear_cka_fw_p.iloc[0]


def test_the_page_is_one_file_that_needs_no_network(report):
    path, page, _, _ = report
    assert "plotly.js" in page  # the library is inlined
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", page)
    assert len(path.parent.joinpath("report.html").read_bytes()) < 20 * 2**20
    assert sorted(p.name for p in path.parent.iterdir() if p.is_file()) == [
        "checks.json", "report.html"]


def test_names_are_text_in_the_page(small_run, tmp_path):
    """A store whose network is called `</script><script>…` (a store from elsewhere can name
    it so): nothing of it closes the data's script element or becomes markup, and the page's
    data still holds the name exactly."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    hostile = "</script><script>window.pwned=1</script><img src=x onerror=pwned=1>"
    with sqlite3.connect(run / "results.sqlite") as db:
        for table, columns in (("cells", ("sender", "receiver")),
                               ("similarities", ("sender", "receiver")),
                               ("networks", ("name",))):
            for column in columns:
                db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = 'cnn'", (hostile,))
    page = write_report(run / "results.sqlite", tmp_path / "report").read_text()
    assert hostile not in page and "<script>window.pwned" not in page
    assert "<img src=x" not in page
    data = page_data(page)
    assert hostile in {t["sender"] for t in data["tables"]}
    assert any(c["sender"] == hostile for c in data["cells"].values())


def test_a_failing_check_links_to_cells_the_page_holds(tmp_path):
    """The checks of a store whose self-pairs lose accuracy: each failing check's cells are
    cells of the page, in a table it can show."""
    store = fake_store(tmp_path / "bad.sqlite", self_diag=0.5)
    data = page_data(write_report(store, tmp_path / "report").read_text())
    failed = [c for c in data["checks"] if c["passed"] is False]
    assert {c["name"] for c in failed} == {"self-pairs", "self-identification (stitching)"}
    tables = {(t["sender"], t["receiver"], t["control"], t["metric"]) for t in data["tables"]
              if t["view"] in ("mean", "measure")}
    for check in failed:
        assert check["cells"], check["name"]
        for ref in check["cells"]:
            assert cell_id(ref["sender"], ref["receiver"], ref["sender_point"],
                           ref["receiver_point"]) in data["cells"]
            assert (ref["sender"], ref["receiver"], ref["control"], ref["metric"]) in tables
    assert all(c["cells"] == [] for c in data["checks"] if c["passed"])
