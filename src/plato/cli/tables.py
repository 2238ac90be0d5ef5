"""Tables: stitching and similarity tables from a store, similarity grids of two checkpoints,
the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import AllSpecs, Device, Json, MlflowUri, Quiet, Root, SpecName, Store
from plato.cli.output import emit, format_intervals, format_model_scores, format_table
from plato.errors import printable
from plato.similarity import MEASURES, SimilarityConfig
from plato.sweep.views import TableQuery

QUERY = TableQuery()
SIMILARITY = SimilarityConfig()


@app.command()
def table(
    store: Store,
    spec: SpecName = None,
    all_specs: AllSpecs = False,
    pair: Annotated[tuple[str, str] | None, typer.Option(
        help="SENDER RECEIVER (default: all).")] = None,
    control: Annotated[str, typer.Option(help="Which control's table.")] = QUERY.control,
    metric: Annotated[str, typer.Option(
        help="stitched_accuracy, normalized_accuracy, activation_mse, activation_cka, ..., "
        "or a similarity measure of the spec (cka, procrustes, ...)")] = QUERY.metric,
    stat: Annotated[str, typer.Option(help="mean, std or n over seeds.")] = QUERY.stat,
    debiased: Annotated[str | None, typer.Option(
        help="diff or normalized: trained minus --control.")] = None,
    ci: Annotated[bool, typer.Option(
        "--ci", help="Each cell's 95% interval: over seeds, else over test examples; "
        "debiased: paired with the control.")] = False,
    latest: Annotated[bool, typer.Option(
        help="Also the latest stitchable receiver point.")] = False,
    threshold: Annotated[float, typer.Option(
        help="Fraction of receiver accuracy for --latest.")] = QUERY.threshold,
    level: Annotated[float | None, typer.Option(
        help="A compression axis's level (an amount or a temperature): only the tables of "
        "the networks at it; a family's name in --pair means its network at it.")] = None,
    csv: Annotated[Path | None, typer.Option(
        help="Export every aggregated cell (long form) as CSV.")] = None,
    parquet: Annotated[Path | None, typer.Option(help="The same as Parquet.")] = None,
    as_json: Json = False,
) -> None:
    """Print similarity tables (rows = sender points, columns = receiver points)."""
    from plato.sweep.views import table_views

    query = TableQuery(spec, all_specs, pair, control, metric, stat, debiased, ci, latest,
                       threshold, level)
    found = table_views(store, query)
    if csv or parquet:
        long = found.tidy()
        if csv:
            long.to_csv(csv, index=False)
        if parquet:
            long.to_parquet(parquet, index=False)
    text = [f"spec {found.spec}" if found.spec else "every spec of the store, pooled", ""]
    for view in found.views:
        if ci:
            text += [view.title + ", with 95% intervals",
                     format_intervals(view.values, view.low, view.high), view.interval,
                     *view.notes, ""]
        else:
            text += [view.title, format_table(view.values), ""]
        if view.latest is not None:
            text += [view.latest.name, view.latest.fillna("none").to_string(), ""]
        if view.scores:
            text += [*format_model_scores(view.scores), ""]
    emit({"tables": [v.to_dict() for v in found.views]}, as_json, "\n".join(text).rstrip())


@app.command()
def similarity(
    net_a: Annotated[Path, typer.Argument(help="Checkpoint A (rows).")],
    net_b: Annotated[Path, typer.Argument(help="Checkpoint B (columns).")],
    measure: Annotated[list[str] | None, typer.Option(
        help=f"{', '.join(MEASURES)} (cka: minibatch, streaming); repeat for several. "
        "Default: cka.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Default: A's training dataset.")] = None,
    root: Root = None,
    split: Annotated[str, typer.Option(help="test or train.")] = SIMILARITY.split,
    examples: Annotated[int | None, typer.Option(
        help="Examples to stream (default: the whole split).")] = SIMILARITY.examples,
    collect: Annotated[int, typer.Option(
        help="Examples held for the whole-matrix measures.")] = SIMILARITY.collect,
    batch_size: Annotated[int, typer.Option(
        help="Batch size (cka: the minibatch).")] = SIMILARITY.batch_size,
    layout: Annotated[str, typer.Option(
        help="flatten, positions or pool, for conv points.")] = SIMILARITY.layout,
    permutations: Annotated[int, typer.Option(
        help="Permutation null: shuffles of B's examples against A's, for p-values and "
        "calibrated scores (0: none).")] = SIMILARITY.permutations,
    null_examples: Annotated[int, typer.Option(
        help="Examples the permutation null is computed on.")] = SIMILARITY.null_examples,
    memory_gb: Annotated[float | None, typer.Option(
        help="Memory the held examples may take, in GB (default: half of what is free); "
        "layers that do not fit at once are held in several passes.")] = None,
    granularity: Annotated[str, typer.Option(help="block or layer cut points.")] = "block",
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Similarity of every cut point of A to every cut point of B (rows = A, columns = B)."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.similarity import similarity_grid

    config = SimilarityConfig(layout=layout, batch_size=batch_size, examples=examples,
                              collect=collect, split=split, permutations=permutations,
                              null_examples=null_examples, memory_gb=memory_gb)
    a, b = load_checkpoint(net_a), load_checkpoint(net_b)
    ds = dataset_for([a, b], dataset, root)
    tables = similarity_grid(a.model, b.model, ds, tuple(measure or ("cka",)), config,
                             granularity=granularity, device=device, progress=not quiet)
    text = []
    for name, t in tables.items():
        frame = t.frame()
        frame.index.name, frame.columns.name = f"{a.name} (A)", f"{b.name} (B)"
        text += [f"{name} on {t.examples} {ds.name} {split} examples (layout {layout}):",
                 format_table(frame), ""]
        if t.permutations:
            p = t.frame(t.p_values)
            p.index.name, p.columns.name = frame.index.name, frame.columns.name
            text += [f"{name}: p-value of each cell against {t.permutations} shuffles of B's "
                     f"examples (first {t.null_examples}; the smallest possible is "
                     f"{1 / (t.permutations + 1):.3f}):", format_table(p), ""]
        if t.chance is not None:
            text.append(f"{name}: two unrelated representations score {t.chance:.3f} on "
                        "average (chance level)")
        if t.permutations and math.isfinite(t.fw_threshold):
            text.append(f"{name}: 95% of the shuffles' most similar cells are less similar "
                        f"than {t.fw_threshold:.4f} (the family-wise threshold)")
        if t.scores:
            text += [f"{name}, " + line if i == 0 else line for i, line in enumerate(
                format_model_scores({k: {**v.to_dict(), "examples": t.null_examples,
                                         "permutations": t.permutations}
                                     for k, v in t.scores.items()}))]
        undefined = {r for row in t.reasons for r in row if r}
        text += [f"  NaN: {r}" for r in sorted(undefined)]
    emit({"a": str(net_a), "b": str(net_b), "dataset": ds.name, "split": split,
          "layout": layout, "tables": {k: t.to_dict() for k, t in tables.items()}},
         as_json, "\n".join(text).rstrip())


@app.command()
def report(
    store: Store,
    out: Annotated[Path, typer.Option(help="Folder for report.html and the heatmaps.")] = ...,
    spec: SpecName = None,
    all_specs: AllSpecs = False,
    metric: Annotated[str, typer.Option(help="The metric of the tables.")] = QUERY.metric,
    static: Annotated[bool, typer.Option(
        "--static", help="Every table as a PNG heatmap on a page without a script (the "
        "default page is interactive: Plotly heatmaps, a click opens a cell's details).")] = False,
    as_json: Json = False,
) -> None:
    """Write one self-contained report.html (it opens offline): interactive by default,
    `--static` for PNG heatmaps."""
    from plato.report import write_report

    path = write_report(store, out, spec=spec, metric=metric, all_specs=all_specs,
                        static=static)
    emit({"report": str(path)}, as_json, f"report: {path}")


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="A sweep's run folder (or its results.sqlite).")],
    fmt: Annotated[str, typer.Option(
        "--format", help="csv, parquet or json (records).")] = "parquet",
    out: Annotated[Path | None, typer.Option(
        help="The file to write (default: RUN/export.FORMAT).")] = None,
    spec: SpecName = None,
    mlflow: MlflowUri = None,
    as_json: Json = False,
) -> None:
    """Every cell of a sweep as one long-form table (one row per cell and metric: the
    networks, points, stitch, objective, seed, value, interval, n, convergence, p-values and
    key), for pandas, R, spreadsheets and experiment trackers (schema: README, "Exports")."""
    from plato.sweep.export import export

    store_path = run / "results.sqlite" if run.is_dir() else run
    folder = run if run.is_dir() else run.parent
    path, rows = export(store_path, out or folder / f"export.{fmt}", fmt, spec)
    runs = None
    if mlflow:
        from plato.report.tracker import log_to_mlflow

        runs = log_to_mlflow(store_path, mlflow, spec=spec)
    emit({"export": str(path), "rows": rows, "format": fmt,
          **({"mlflow_runs": runs} if runs else {})}, as_json,
         f"{rows:,} rows ({fmt}): {path}"
         + (f"\nmlflow: {len(runs)} run(s) at {printable(mlflow)}" if runs else ""))
