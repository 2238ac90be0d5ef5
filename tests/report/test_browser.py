"""The interactive report in a real browser (headless Chromium, Debian's `chromium` and
`chromium-driver`, which .ci/run installs): a real mouse click on a heatmap cell opens a panel
whose values are the store's; the controls switch the table; a failing check's link opens its
cell; a hostile network name stays text. Skipped, with the reason, where no browser is
installed; CI sets PLATO_REQUIRE_BROWSER so there a missing browser fails instead."""

import os
import shutil
import sqlite3
import time

import numpy as np
import pytest

from plato.report import write_report
from plato.sweep.store import Store
from plato.sweep.tables import (
    cell_interval,
    debiased_table,
    load_cells,
    load_similarities,
    stat_table,
)
from tests.report.test_interactive import as_array
from tests.sweep.test_checks import fake_store

pytestmark = pytest.mark.slow
SEP = "\x1f"


def _find(*names: str) -> str | None:
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    missing = [what for what, found in (("chromium", chromium), ("chromedriver", driver))
               if not found]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"no headless browser here ({', '.join(missing)} missing): install Debian's "
                  "chromium and chromium-driver (.ci/run does) and `make test`'s selenium")
        if os.environ.get("PLATO_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1400"):
        options.add_argument(flag)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def open_page(browser, path):
    browser.get(path.resolve().as_uri())
    wait(browser, "return !!document.querySelector('#heatmap .hm, #heatmap .heatmaplayer')")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # the page's script ran without an error


def wait(browser, script: str, timeout: float = 10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def choose(browser, pick: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", pick)).select_by_value(value)


def click_cell(browser, row: int, column: int) -> None:
    """A real mouse click at the centre of the heatmap cell (row, column), found from Plotly's
    axes (a category axis puts category k at coordinate k)."""
    from selenium.webdriver.common.action_chains import ActionChains

    plot = browser.find_element("id", "heatmap")
    browser.execute_script("arguments[0].scrollIntoView()", plot)
    x, y = browser.execute_script(
        "const gd = arguments[0], L = gd._fullLayout;"
        "return [L.xaxis._offset + L.xaxis.l2p(arguments[2]),"
        "        L.yaxis._offset + L.yaxis.l2p(arguments[1])];", plot, row, column)
    size = plot.size
    ActionChains(browser).move_to_element_with_offset(
        plot, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()


def shown(browser, table_id: str) -> list[dict]:
    """The panel's table as one dict per row: each number's stored value (data-value)."""
    return browser.execute_script("""
        const t = document.getElementById(arguments[0]);
        return [...t.querySelectorAll('tr')].slice(1).map(tr => {
          const row = {};
          tr.querySelectorAll('td[data-field]').forEach(td => {
            row[td.dataset.field] = td.hasAttribute('data-value')
              ? Number(td.dataset.value) : td.textContent;
            row[td.dataset.field + ' text'] = td.textContent;
          });
          return row;
        });""", table_id)


@pytest.fixture(scope="module")
def stored(small_run):
    with Store(small_run / "results.sqlite", create=False) as store:
        return load_cells(store), load_similarities(store)


def test_a_clicked_cell_shows_its_stored_values(browser, small_run, stored, tmp_path):
    cells, sims = stored
    page = write_report(small_run / "results.sqlite", tmp_path / "report")
    open_page(browser, page)
    choose(browser, "pick-pair", "cnn" + SEP + "resnet")
    choose(browser, "pick-metric", "stitched_accuracy")
    choose(browser, "pick-control", "trained->trained")
    table = stat_table(cells, "cnn", "resnet")
    row, column = 0, 1  # cnn:stem -> resnet:layer2.0
    sp, rp = table.index[row], table.columns[column]
    click_cell(browser, row, column)
    wait(browser, f"return document.getElementById('details').dataset.cell === "
                  f"{repr(SEP.join(['cnn', 'resnet', sp, rp]))}")
    assert browser.find_element("id", "cell-title").text == f"cnn:{sp} → resnet:{rp}"

    place = cells[(cells.sender == "cnn") & (cells.receiver == "resnet")
                  & (cells.sender_point == sp) & (cells.receiver_point == rp)]
    by_control = {r["control"]: r for r in shown(browser, "cell-stitching")}
    for control, rows in place.groupby("control"):
        values = by_control[control]
        low, high = cell_interval(rows, "stitched_accuracy")
        assert values["stitched_accuracy"] == rows.stitched_accuracy.mean()
        assert (values["low"], values["high"], values["n"]) == (low, high, 2)
        assert values["stitched_accuracy text"] == f"{rows.stitched_accuracy.mean():.4f}"
    fits = shown(browser, "cell-fits")
    assert len(fits) == len(place) == 4  # 2 controls x 2 seeds
    for fit in fits:
        row_ = place[(place.seed == fit["seed"])
                     & (place.stitched_accuracy == fit["stitched_accuracy"])]
        assert len(row_) >= 1 and row_.steps.iloc[0] == fit["steps"]
        assert row_.receiver_distance.iloc[0] == fit["receiver_distance"]
    (debiased,) = shown(browser, "cell-debiased")
    expected = debiased_table(cells, "cnn", "resnet").loc[sp, rp]
    assert debiased["difference"] == pytest.approx(expected, abs=1e-15)
    similarity = shown(browser, "cell-similarity")
    for m in similarity:
        row_ = sims[(sims.sender == "cnn") & (sims.receiver == "resnet")
                    & (sims.sender_point == sp) & (sims.receiver_point == rp)]
        assert m["value"] in set(row_.linear_cka) and m["measure"] == "linear_cka"
    assert len(similarity) == 2  # both controls
    # the hover of the same cell: its value and interval, as the figure formats them
    hover = wait(browser, "const h = document.querySelector('.hoverlayer .hovertext');"
                          "return h && h.textContent")
    low, high = (stat_table(cells, "cnn", "resnet", stat=s).loc[sp, rp] for s in ("low", "high"))
    assert f"stitched_accuracy {table.loc[sp, rp]:.4f}" in hover
    assert f"[{low:.4f}, {high:.4f}]" in hover
    # another metric of the same pair keeps the open cell outlined where it is
    choose(browser, "pick-metric", "steps")
    shapes = browser.execute_script("return document.getElementById('heatmap').layout.shapes")
    assert len(shapes) == 1 and (shapes[0]["x0"], shapes[0]["y0"]) == (column - 0.5, row - 0.5)


def test_the_controls_switch_metric_control_and_view(browser, small_run, stored, tmp_path):
    cells, sims = stored
    open_page(browser, write_report(small_run / "results.sqlite", tmp_path / "report"))

    def drawn():
        return as_array(browser.execute_script(
            "return document.getElementById('heatmap').data[0].z"))

    choose(browser, "pick-pair", "resnet" + SEP + "resnet")
    choose(browser, "pick-metric", "linear_cka")
    choose(browser, "pick-control", "random->trained")
    np.testing.assert_array_equal(drawn(), stat_table(sims, "resnet", "resnet",
                                                      "random->trained", "linear_cka"))
    choose(browser, "pick-metric", "stitched_accuracy")
    choose(browser, "pick-view", "debiased")
    np.testing.assert_array_equal(drawn(), debiased_table(cells, "resnet", "resnet"))
    choose(browser, "pick-view", "mean")
    choose(browser, "pick-control", "trained->trained")
    np.testing.assert_array_equal(drawn(), stat_table(cells, "resnet", "resnet"))


def test_a_failing_checks_link_opens_its_cell(browser, tmp_path):
    store = fake_store(tmp_path / "bad.sqlite", self_diag=0.5)
    open_page(browser, write_report(store, tmp_path / "report"))
    row = browser.find_element("css selector", "tr[data-check='self-pairs']")
    assert row.find_element("css selector", "td").text == "FAIL"
    link = row.find_elements("css selector", "a.cell-link")[1]
    assert link.text == "A:p1 → A:p1"
    link.click()
    wait(browser, "return document.getElementById('details').dataset.cell === "
                  f"{repr(SEP.join(['A', 'A', 'p1', 'p1']))}")
    (trained,) = [r for r in shown(browser, "cell-stitching")
                  if r["control"] == "trained->trained"]
    assert trained["stitched_accuracy"] == 0.5  # the value that fails the check
    assert browser.execute_script("return document.getElementById('pick-pair').value") == \
        "A" + SEP + "A"


def test_a_hostile_name_is_shown_as_text(browser, small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    hostile = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    with sqlite3.connect(run / "results.sqlite") as db:
        for table, column in (("cells", "sender"), ("similarities", "sender"),
                              ("networks", "name")):
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = 'cnn'", (hostile,))
    open_page(browser, write_report(run / "results.sqlite", tmp_path / "report"))
    choose(browser, "pick-pair", hostile + SEP + "resnet")
    click_cell(browser, 0, 0)
    wait(browser, "return document.getElementById('cell-title').textContent.length > 0")
    assert browser.find_element("id", "cell-title").text == f"{hostile}:stem → resnet:stem"
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
