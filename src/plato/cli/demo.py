"""The demo: the whole pipeline on the bundled digits data in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import Json, Quiet
from plato.cli.output import emit

DEMO_SPEC = """\
# The demo: two small networks of different architectures on the bundled digits data,
# every ordered pair (self-pairs included), with random-sender controls, and minibatch CKA
# beside the stitching tables.
name: demo
dataset: digits
networks:
  resnet: {train: {model: resnet-1111, width: 8, epochs: 15, batch_size: 64, seed: 0}}
  cnn: {train: {model: cnn-3, width: 16, epochs: 15, batch_size: 64, seed: 1}}
pairs: all
points: all
controls: [trained->trained, random->trained]
seeds: [0]
stitch: bn-conv1x1-bn
objective: lstsq+task
recipe: {epochs: 2, batch_size: 64, lr: 0.003}
measures: [stitch, cka]
similarity: {batch_size: 120}
"""


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """The whole pipeline on `digits`: train two networks, sweep all tables, write a report."""
    from plato.files import write_file
    from plato.report import write_report
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec

    spec_path = write_file(out / "demo.yaml", DEMO_SPEC)
    summary = run_sweep(load_spec(spec_path), out, device="cpu", progress=not quiet)
    path = write_report(summary.store, out, spec="demo")
    obj = {**summary.to_dict(), "report": str(path)}
    emit(obj, as_json, f"demo: {summary.cells} cells ({summary.done} stitched, "
         f"{summary.unstitchable} not stitchable, {summary.failed} failed) in "
         f"{summary.seconds:.0f} s\nreport: {path}")
