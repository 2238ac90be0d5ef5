"""The README's screenshots of the report, made from the demo (its spec is `plato demo`'s, in
src/plato/cli/demo.py): the interactive page with a cell's panel open, and the static page.

    python docs/screenshots.py [--run runs/demo]

Runs the demo into RUN unless it is there, writes both reports beside it, and photographs them
in headless Chromium (Debian's chromium and chromium-driver, and selenium: `make test`
installs it) at 1400 px wide. Writes docs/report-interactive.png and docs/report-static.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--window-size=1400,1150", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def open_cell(driver, row: int, column: int) -> None:
    """Click the heatmap cell (row, column) with the mouse, as a reader would."""
    from selenium.webdriver.common.action_chains import ActionChains

    plot = driver.find_element("id", "heatmap")
    x, y = driver.execute_script(
        "const L = arguments[0]._fullLayout;"
        "return [L.xaxis._offset + L.xaxis.l2p(arguments[2]),"
        "        L.yaxis._offset + L.yaxis.l2p(arguments[1])];", plot, row, column)
    size = plot.size
    ActionChains(driver).move_to_element_with_offset(
        plot, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()
    time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()
    plato = [str(Path(sys.executable).parent / "plato")]  # the environment's command
    if not (args.run / "results.sqlite").is_file():
        subprocess.run([*plato, "demo", "--out", str(args.run), "--quiet"], check=True)
    store = str(args.run / "results.sqlite")
    interactive, static = args.run / "report-interactive", args.run / "report-static"
    subprocess.run([*plato, "report", store, "--out", str(interactive)], check=True)
    subprocess.run([*plato, "report", store, "--out", str(static), "--static"], check=True)

    driver = browser()
    try:
        driver.get((interactive / "report.html").resolve().as_uri())
        time.sleep(1.5)
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element("id", "pick-pair")).select_by_index(1)  # cnn -> cnn-seed1
        open_cell(driver, 1, 1)
        driver.execute_script("document.getElementById('verdict').scrollIntoView()")
        driver.save_screenshot(str(HERE / "report-interactive.png"))
        driver.get((static / "report.html").resolve().as_uri())
        time.sleep(1)
        driver.execute_script("document.querySelector('h2:nth-of-type(4)').scrollIntoView()")
        driver.save_screenshot(str(HERE / "report-static.png"))
    finally:
        driver.quit()
    print(f"wrote {HERE / 'report-interactive.png'} and {HERE / 'report-static.png'}")


if __name__ == "__main__":
    main()
