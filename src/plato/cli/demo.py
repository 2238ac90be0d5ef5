"""The demo: the whole pipeline on the bundled digits data in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import Json, Quiet
from plato.cli.output import emit

DEMO_SPEC = """\
# The demo: two seeds of one small CNN on the bundled digits data, each stitched into itself
# and into the other, with random-sender controls and minibatch CKA beside the stitching
# tables. Every fit runs until a held-out slice of the training split stops improving (the
# converging budget, looking every 10 steps); every sanity check has what it needs.
name: demo
dataset: digits
networks:
  cnn: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 0}}
  cnn-seed1: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 1}}
pairs: [[cnn, cnn], [cnn, cnn-seed1]]
points: [stem, block1, block2]
controls: [trained->trained, random->trained]
seeds: [0]
stitch: bn-conv1x1-bn
recipe: {check_every: 10, min_steps: 20}
measures: [stitch, cka]
similarity: {batch_size: 120}
"""


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """The whole pipeline on `digits`: train two seeds of a CNN, stitch every pair of their
    cut points until each fit converges, with random controls and CKA, check it, and write
    the interactive report (about 26 s on 2 CPU cores)."""
    from plato.files import write_file
    from plato.report import write_report
    from plato.sweep.checks import load_checks, verdict
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec

    spec_path = write_file(out / "demo.yaml", DEMO_SPEC)
    summary = run_sweep(load_spec(spec_path), out, device="cpu", progress=not quiet)
    path = write_report(summary.store, out, spec="demo")
    checks = load_checks(path.parent / "checks.json")
    obj = {**summary.to_dict(), "report": str(path), "checks": verdict(checks)}
    emit(obj, as_json, f"demo: {summary.cells} cells ({summary.done} stitched, "
         f"{summary.unstitchable} not stitchable, {summary.failed} failed) in "
         f"{summary.seconds:.0f} s\nchecks: {verdict(checks)}\nreport: {path}")
