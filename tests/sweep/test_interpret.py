"""Interpretation in a sweep: spec `interpret: {invert, saliency, ood}`, stored, resumed, and
the report's section."""

import json

import pytest

from plato.errors import SpecError
from plato.report import write_report
from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from plato.sweep.store import Store
from plato.sweep.tables import load_cells
from tests.helpers import run_plato
from tests.sweep.conftest import write_spec

INTERPRET = {
    "invert": {"max_steps": 100, "min_steps": 50, "check_every": 50, "optimise_steps": 10,
               "images": 3},
    "saliency": {"images": 8, "shown": 3, "ig_steps": 4, "deletion_steps": 4},
    "ood": True,
}


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory, digits_checkpoints):
    """A small sweep of the resnet into itself and into the cnn, with every interpretation."""
    folder = tmp_path_factory.mktemp("interpret")
    spec = load_spec(write_spec(
        folder / "s.yaml", digits_checkpoints, name="why", pairs=[["resnet", "resnet"],
                                                                  ["resnet", "cnn"]],
        points={"resnet": ["stem", "layer2.0", "pool"], "cnn": ["stem", "pool"]},
        interpret=INTERPRET, recipe={"batch_size": 256, "max_steps": 100}, objective=None))
    first = run_sweep(spec, folder / "run", progress=False)
    again = run_sweep(spec, folder / "run", progress=False)
    return folder, spec, first, again


@pytest.mark.slow
def test_every_cell_has_its_saliency_and_its_distance(interpreted):
    folder, _, first, _ = interpreted
    with Store(folder / "run" / "results.sqlite") as store:
        cells = load_cells(store, "why")
    done = cells[cells.status == "done"]
    assert first.done == len(done) > 0
    assert done.saliency_agreement.between(-1, 1).all()
    assert done.deletion_area.between(0, 1).all()
    assert done.receiver_distance.gt(0).all() and done.receiver_own_distance.gt(0).all()
    for _, cell in done.iterrows():
        numbers = json.loads(cell.result)["saliency"]
        vector = "pool" in (cell.sender_point, cell.receiver_point)
        # grad_cam needs two spatial points: NaN (stored as null) where one is a vector
        assert (numbers["grad_cam_agreement_receiver"] is None) == vector
        assert (folder / "run" / json.loads(cell.result)["saliency_file"]).is_file()
    # the resnet stitched into itself at the same point: the stitched network is (almost) the
    # resnet, so its saliency agrees with the receiver's
    same = done[(done.sender == "resnet") & (done.receiver == "resnet")
                & (done.control == "trained->trained") & (done.sender_point == "layer2.0")
                & (done.receiver_point == "layer2.0")]
    assert same.saliency_agreement.iloc[0] > 0.8


def test_the_autoencoder_twin_sits_beside_each_vanilla_cell(interpreted):
    folder, _, _, _ = interpreted
    with Store(folder / "run" / "results.sqlite") as store:
        vanilla = load_cells(store, "why")
        twin = load_cells(store, "why-match")
        assert store.one_spec(None) == "why"  # the twin belongs to the spec's report
    trained = vanilla[vanilla.control == "trained->trained"]
    assert len(twin) == len(trained) and set(twin.control) == {"trained->trained"}
    assert {json.loads(r)["objective"] for r in twin.result.dropna()} == {"match"}
    key = ["sender", "receiver", "sender_point", "receiver_point"]
    assert sorted(map(tuple, twin[key].to_numpy())) == sorted(map(tuple, trained[key]
                                                                 .to_numpy()))


def test_reconstructions_from_every_network_and_point_are_stored(interpreted):
    folder, _, _, _ = interpreted
    with Store(folder / "run" / "results.sqlite") as store:
        rows = store.interpretations("invert", "why")
    got = {(r.network, r.role, r.point) for r in rows.itertuples()}
    want = {(n, role, p) for n, points in (("resnet", ("stem", "layer2.0", "pool")),
                                           ("cnn", ("stem", "pool")))
            for role in ("trained", "random") for p in points}
    assert got == want
    assert rows.psnr.gt(5).all() and rows.ssim.between(0, 1).all()
    assert all((folder / "run" / f).is_file() for f in rows.file)


def test_a_rerun_computes_nothing_again(interpreted):
    folder, _, first, again = interpreted
    assert again.done == 0 and again.skipped == first.cells
    with Store(folder / "run" / "results.sqlite") as store:
        assert len(store.interpretations("invert", "why")) == 10


@pytest.mark.slow
def test_the_report_has_the_interpretation_section(interpreted):
    folder, _, _, _ = interpreted
    page = write_report(folder / "run" / "results.sqlite", folder / "report").read_text()
    for heading in ("What the layers know", "Reconstructing the input from each cut point",
                    "Saliency through the stitched networks",
                    "Does the stitch speak the receiver"):
        assert heading in page, heading
    figures = {p.name for p in (folder / "report" / "heatmaps").iterdir()}
    assert {"reconstruction_quality.png", "distance_vs_accuracy.png",
            "reconstructions-resnet-trained.png"} <= figures
    assert any(name.startswith("saliency__") for name in figures)
    # the interactive page: each trained cell's panel shows its own saliency maps (carried in
    # the page, hidden until opened) and links to the reconstructions from its networks
    from plato.report.explore import cell_id
    from tests.report.test_interactive import page_data

    cells = page_data(page)["cells"]
    pictures = {p["anchor"] for p in cells[cell_id("resnet", "cnn", "layer2.0", "pool")]
                ["pictures"]}
    assert {"saliency__resnet__layer2.0__cnn__pool", "reconstructions-resnet-trained",
            "reconstructions-cnn-trained"} <= pictures
    for anchor in pictures:
        assert f'<figure id="{anchor}">' in page
    with Store(folder / "run" / "results.sqlite") as store:
        stored = load_cells(store, "why")
    mapped = stored[(stored.control == "trained->trained") & stored.saliency_agreement.notna()]
    hidden = page[page.index('<div id="cell-figures" hidden>'):]
    assert hidden.count("<figure") == len(mapped) > 0  # every trained cell with maps


def test_interpret_fields_are_checked(tmp_path, digits_checkpoints):
    for interpret, field in (({"saliency": {"methods": ["lime"]}}, "interpret.saliency.methods"),
                             ({"invert": {"max_step": 3}}, "interpret.invert.max_step"),
                             ({"ood": "yes"}, "interpret.ood"),
                             ({"explain": True}, "interpret.explain")):
        path = write_spec(tmp_path / "s.yaml", digits_checkpoints, interpret=interpret)
        with pytest.raises(SpecError, match=f"spec field '{field}'"):
            load_spec(path)


def test_adding_saliency_to_a_stored_spec_is_refused(interpreted, digits_checkpoints):
    folder, spec, _, _ = interpreted
    from dataclasses import replace

    from plato.interpret.config import SaliencyConfig

    changed = replace(spec, interpret=replace(spec.interpret,
                                              saliency=SaliencyConfig(images=9)))
    with pytest.raises(SpecError, match="saliency"):
        run_sweep(changed, folder / "run", progress=False)


def test_saliency_agreement_is_a_table_like_any_metric(interpreted):
    folder, _, _, _ = interpreted
    out = json.loads(run_plato("table", str(folder / "run" / "results.sqlite"), "--metric",
                               "saliency_agreement", "--json", ok=True).stdout)
    assert out["tables"] and {t["metric"] for t in out["tables"]} == {"saliency_agreement"}
    values = [v for t in out["tables"] for row in t["values"] for v in row if v is not None]
    assert values and all(-1 <= v <= 1 for v in values)
