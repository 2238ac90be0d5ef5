"""Stitching two networks: stitch, replace a span, explain a stitch, reconstruct the input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plato.cli.app import app
from plato.cli.options import (
    CONVERGING,
    BatchSize,
    Device,
    DeviceOrConfig,
    Epochs,
    Fast,
    FromPoint,
    Granularity,
    InvertSettings,
    Json,
    Lr,
    NetworksDataset,
    Objective,
    Quiet,
    Receiver,
    Root,
    SaliencySettings,
    Seed,
    Sender,
    SendersDataset,
    Settings,
    StitchType,
    ToPoint,
    settings,
    stitch_config,
)
from plato.cli.output import emit, result_line
from plato.errors import PlatoError
from plato.interpret.config import InvertConfig, SaliencyConfig
from plato.stitch.config import CHOICES
from plato.stitch.registry import DEFAULT_STITCH


@app.command()
def stitch(
    sender: Sender,
    receiver: Receiver,
    from_point: FromPoint,
    to_point: ToPoint,
    objective: Objective = None,
    stitch_type: StitchType = DEFAULT_STITCH,
    resize: Annotated[str, typer.Option(
        help="Spatial resize: area, bilinear or nearest.")] = "area",
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    match_loss: Annotated[str | None, typer.Option(
        help=f"{' or '.join(CHOICES['match_loss'])}, for the match objective.")] = None,
    ridge: Annotated[float | None, typer.Option(
        help=f"Relative ridge of lstsq (default {CONVERGING.ridge:g}).")] = None,
    fast: Fast = False,
    setting: Settings = None,
    granularity: Granularity = "block",
    dataset: SendersDataset = None,
    root: Root = None,
    seed: Seed = None,
    device: DeviceOrConfig = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Stitch SENDER at --from into RECEIVER at --to, train the stitch, and measure it."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.stitch import stitch_networks

    config = stitch_config(fast, setting, objective=objective, epochs=epochs,
                           batch_size=batch_size, lr=lr, match_loss=match_loss, ridge=ridge,
                           seed=seed, device=device)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = dataset_for([s_ckpt, r_ckpt], dataset, root)
    result, _ = stitch_networks(s_ckpt, r_ckpt, from_point, to_point, ds, stitch=stitch_type,
                                config=config, granularity=granularity, resize=resize,
                                progress=not quiet)
    emit({**result.to_dict(), "config": config.to_dict()}, as_json, result_line(result))


@app.command()
def capacity(
    sender: Sender,
    receiver: Receiver,
    from_point: FromPoint,
    to_point: ToPoint,
    out: Annotated[Path, typer.Option(help="Folder for report.html, capacity.png, "
                                           "capacity.csv.")] = Path("capacity"),
    stitch_type: Annotated[list[str] | None, typer.Option(
        "--stitch", help="The stitches to compare, repeatable (default: permutation, "
        "orthogonal, sparse-1..3, lowrank-1, 2, 4, ... below the narrower width, conv1x1).")
                           ] = None,
    objective: Objective = None,
    fast: Fast = False,
    setting: Settings = None,
    dataset: SendersDataset = None,
    root: Root = None,
    seed: Seed = None,
    device: DeviceOrConfig = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """How much transformation the stitch needs: SENDER at --from into RECEIVER at --to by
    families of growing capacity, accuracy against free parameters (a plot and a table)."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.report.capacity import write_capacity_report
    from plato.stitch.capacity import capacity_table

    config = stitch_config(fast, setting, objective=objective, seed=seed, device=device)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = dataset_for([s_ckpt, r_ckpt], dataset, root)
    rows = capacity_table(s_ckpt, r_ckpt, from_point, to_point, ds, stitches=stitch_type,
                          config=config, progress=not quiet)
    page = write_capacity_report(rows, out, f"Capacity: {sender.stem}:{from_point} -> "
                                 f"{receiver.stem}:{to_point} ({config.objective})")
    lines = [f"{r.stitch:>12}  {r.free_parameters:>9,} free  {100 * r.accuracy:5.1f}% "
             f"[{100 * r.accuracy_low:.1f}, {100 * r.accuracy_high:.1f}]" for r in rows]
    emit({"rows": [r.to_dict() for r in rows], "report": str(page)}, as_json,
         "\n".join(lines + [f"report: {page}"]))


@app.command()
def replace(
    checkpoint: Annotated[Path, typer.Argument(help="A trained network.")],
    from_point: Annotated[str, typer.Option("--from", help="First cut point of the span.")],
    to_point: Annotated[str, typer.Option("--to", help="Last cut point of the span.")],
    objective: Annotated[list[str] | None, typer.Option(
        help="match (autoencoder) and/or task (vanilla); default both, side by side.")] = None,
    stitch_type: StitchType = DEFAULT_STITCH,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    fast: Fast = False,
    setting: Settings = None,
    granularity: Granularity = "block",
    dataset: NetworksDataset = None,
    root: Root = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    device: DeviceOrConfig = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Replace the span --from..--to of one network by a stitch (autoencoder vs vanilla)."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.stitch import replace_span

    objectives = tuple(objective or ("match", "task"))
    config = stitch_config(fast, setting, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed, device=device)
    ckpt = load_checkpoint(checkpoint)
    ds = dataset_for([ckpt], dataset, root)
    results = replace_span(ckpt, from_point, to_point, ds, objectives=objectives,
                           stitch=stitch_type, config=config, granularity=granularity,
                           progress=not quiet)
    first = results[0]
    rows = [{"objective": r.objective, "accuracy": r.stitched_accuracy,
             "activation_mse": r.activation_mse, "activation_cka": r.activation_cka,
             "receiver_distance": r.receiver_distance, "stitch_loss": r.stitch_loss,
             "result": r.to_dict()} for r in results]
    text = [f"{ckpt.name}: span {first.sender_point} -> {first.receiver_point} replaced by "
            f"{stitch_type} ({first.stitch_parameters} parameters); original accuracy "
            f"{first.receiver_accuracy:.4f}",
            f"  {'objective':<10} {'accuracy':>9} {'MSE at to':>11} {'CKA':>7} "
            f"{'distance':>9}"]
    text += [f"  {r['objective']:<10} {r['accuracy']:>9.4f} {r['activation_mse']:>11.4g} "
             f"{r['activation_cka']:>7.4f} {r['receiver_distance']:>9.3g}" for r in rows]
    text.append(f"  distance: from the network's own activations at {first.receiver_point} "
                f"(RMS Mahalanobis per channel); its own test activations lie at "
                f"{first.receiver_own_distance:.3g}")
    obj = {"checkpoint": str(checkpoint), "from": first.sender_point, "to": first.receiver_point,
           "original_accuracy": first.receiver_accuracy, "replacements": rows,
           "config": config.to_dict()}
    emit(obj, as_json, "\n".join(text))


@app.command()
def invert(
    checkpoint: Annotated[Path, typer.Argument(help="Trained network's checkpoint.")],
    points: Annotated[list[str] | None, typer.Option(
        "--points", help="Cut points (names or indices), repeatable; default every block "
        "point.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Run folder (default runs/invert-NAME); a rerun resumes, computing only what is "
        "missing.")] = None,
    control: Annotated[bool, typer.Option(
        help="Also reconstruct from a random-init control of the same architecture.")] = True,
    images: Annotated[int | None, typer.Option(
        help=f"Test images shown and inverted by optimisation (default "
        f"{InvertConfig.images}).")] = None,
    setting: InvertSettings = None,
    granularity: Annotated[str, typer.Option(
        help="block or layer: which points exist.")] = "block",
    dataset: NetworksDataset = None,
    root: Root = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Reconstruct the input from cut points: a trained decoder and optimisation with a TV
    prior; PSNR/SSIM per point for the network and its random control, and image grids."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.files import check_writable
    from plato.report.interpret import invert_figures
    from plato.sweep.interpret import POINT_FIELDS, invert_checkpoint, network_name

    given = settings(setting, given={"images": images}, what="invert setting")
    try:
        config = InvertConfig.from_user(given)
    except PlatoError as e:
        raise PlatoError(f"--set {e}") from None
    ckpt = load_checkpoint(checkpoint)
    ds = dataset_for([ckpt], dataset, root)
    name = network_name(checkpoint)
    run_dir = check_writable(out or Path("runs") / f"invert-{name}")
    frame, computed = invert_checkpoint(ckpt, ds, run_dir, config, points, granularity,
                                        control, device, progress=not quiet)
    figures = invert_figures(frame, run_dir, f"{name} on {ds.name}")
    rows = frame.to_dict(orient="records")
    text = [f"{name}: reconstructions from {frame.point.nunique()} cut points ({computed} "
            f"computed, {len(rows) - computed} from {run_dir / 'results.sqlite'})",
            f"  {'point':<12} {'role':<8} {'PSNR dB':>8} {'SSIM':>6} {'optimised':>10} "
            f"{'steps':>6} converged"]
    text += [f"  {r['point']:<12} {r['role']:<8} {r['psnr']:>8.2f} {r['ssim']:>6.3f} "
             f"{r['optimised_psnr']:>10.2f} {r['steps']:>6} "
             f"{'yes' if r['converged'] else 'NO (' + str(r.get('stop_reason')) + ')'}"
             for r in rows]
    text += [f"  figure: {f}" for f in figures]
    emit({"checkpoint": str(checkpoint), "run": str(run_dir), "computed": computed,
          "points": [{k: r.get(k) for k in POINT_FIELDS} for r in rows],
          "figures": [str(f) for f in figures], "config": config.to_dict()},
         as_json, "\n".join(text))


@app.command()
def saliency(
    sender: Sender,
    receiver: Receiver,
    from_point: FromPoint,
    to_point: ToPoint,
    methods: Annotated[list[str] | None, typer.Option(
        "--method", help="integrated_gradients, gradient_x_input, grad_cam; repeatable "
        "(default all).")] = None,
    images: Annotated[int | None, typer.Option(
        help=f"Test images the scores average over (default "
        f"{SaliencyConfig.images}).")] = None,
    saliency_set: SaliencySettings = None,
    stitch_type: StitchType = DEFAULT_STITCH,
    fast: Fast = False,
    setting: Settings = None,
    out: Annotated[Path, typer.Option(help="Folder for the picture.")] = Path("runs/saliency"),
    granularity: Granularity = "block",
    dataset: SendersDataset = None,
    root: Root = None,
    device: DeviceOrConfig = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Stitch SENDER at --from into RECEIVER at --to, then explain the sender, the receiver and
    the stitched network on the same test images: agreement of their saliency maps (rank
    correlation) and faithfulness (deletion curve area), and a picture of the maps."""
    from plato.checkpoint import dataset_for, load_checkpoint
    from plato.data.images import shown_images
    from plato.device import resolve_device
    from plato.files import check_writable
    from plato.interpret.saliency import explain_stitch, usable_methods
    from plato.models import cut_graph
    from plato.report.interpret import saliency_figure
    from plato.stitch import stitch_networks

    given = settings(saliency_set, "--saliency-set", "ig_steps=16",
                     given={"images": images, "methods": methods or None},
                     what="saliency setting")
    try:
        sal_config = SaliencyConfig.from_user(given)
    except PlatoError as e:
        raise PlatoError(f"--saliency-set {e}") from None
    config = stitch_config(fast, setting, device=device)
    s_ckpt, r_ckpt = load_checkpoint(sender), load_checkpoint(receiver)
    ds = dataset_for([s_ckpt, r_ckpt], dataset, root)
    usable_methods(sal_config.methods,  # before the fit: a wrong method fails at once
                   cut_graph(s_ckpt.model).point(from_point, granularity),
                   cut_graph(r_ckpt.model).point(to_point, granularity))
    check_writable(out)
    result, model = stitch_networks(s_ckpt, r_ckpt, from_point, to_point, ds,
                                    stitch=stitch_type, config=config, granularity=granularity,
                                    progress=not quiet)
    explained = explain_stitch(model, ds, sal_config, resolve_device(config.device))
    names = (f"{s_ckpt.path.stem}-{result.sender_point}-{r_ckpt.path.stem}-"
             f"{result.receiver_point}")
    originals = ds.test.images[shown_images(ds, sal_config.shown)]
    figure = saliency_figure(explained, originals, out / f"saliency-{names}.png",
                             f"{s_ckpt.path.stem}:{result.sender_point} -> "
                             f"{r_ckpt.path.stem}:{result.receiver_point} (stitched accuracy "
                             f"{result.stitched_accuracy:.3f})")
    text = [result_line(result),
            f"saliency on {explained.images} test images (toward the true class):",
            f"  {'method':<22} {'rank correlation of the stitched map with':>44}   "
            f"{'deletion area (lower: more faithful)':>40}",
            f"  {'':<22} {'receiver':>14} {'sender':>14} {'sender~receiver':>15}   "
            f"{'sender':>8} {'receiver':>8} {'stitched':>8} {'random':>8}"]
    for method, n in explained.methods.items():
        text.append(f"  {method:<22} {n['agreement_receiver']:>14.3f} "
                    f"{n['agreement_sender']:>14.3f} {n['agreement_sender_receiver']:>15.3f}   "
                    f"{n['deletion_sender']:>8.3f} {n['deletion_receiver']:>8.3f} "
                    f"{n['deletion_stitched']:>8.3f} {n['deletion_random_order']:>8.3f}")
    text.append(f"  figure: {figure}")
    emit({"stitch": result.to_dict(), "saliency": explained.to_dict(),
          "methods": explained.methods, "figure": str(figure),
          "config": sal_config.to_dict()}, as_json, "\n".join(text))
