"""Pruned and distilled networks in a sweep: amount 0 reproduces the original's self-stitch
table, a rerun re-prunes nothing, the store holds what was measured, the report draws the
compression axis, `plato table --level` picks a level, and a wrong field is named."""

import numpy as np
import pytest
import torch

from plato.checkpoint import load_checkpoint, save_checkpoint
from plato.compress import PruneConfig, prune_network
from plato.models.narrow import tensor_shapes
from plato.report import write_report
from plato.sweep import tables as T
from plato.sweep.networks import Network, random_control
from plato.sweep.run import run_sweep
from plato.sweep.spec import SpecError, load_spec, parse_spec
from plato.sweep.store import Store
from tests.helpers import run_plato
from tests.sweep.conftest import write_spec

NETWORKS = {
    "pruned": {"prune": {"from": "resnet", "method": "magnitude", "amount": [0, 0.6]}},
    "thin": {"prune": {"from": "resnet", "method": "channels", "amount": 0.5,
                       "finetune": {"epochs": 1, "batch_size": 64}}},
    "student": {"distill": {"teacher": "resnet", "model": "cnn-2", "width": 8, "epochs": 1,
                            "batch_size": 64, "temperature": 2}},
}
POINTS = ["layer1.0", "layer2.0", "layer3.0"]


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory, digits_checkpoints):
    folder = tmp_path_factory.mktemp("compress")
    networks = {"resnet": {"checkpoint": str(digits_checkpoints["resnet"])}, **NETWORKS}
    path = write_spec(folder / "s.yaml", {}, networks=networks, measures=["stitch", "cka"],
                      pairs=[["resnet", "resnet"], ["pruned", "pruned"], ["resnet", "pruned"],
                             ["pruned", "resnet"], ["resnet", "thin"], ["student", "resnet"]],
                      points={"resnet": POINTS, "pruned": POINTS, "thin": POINTS},
                      controls=["trained->trained"])
    spec = load_spec(path)
    summary = run_sweep(spec, folder / "run", device="cpu", progress=False)
    return spec, summary, folder / "run"


def test_amount_zero_gives_the_original_self_stitch_table(compressed_run):
    spec, summary, run = compressed_run
    assert summary.failed == 0 and "pruned-0" in spec.networks and "pruned-0.6" in spec.networks
    with Store(run / "results.sqlite", create=False) as store:
        cells = T.load_cells(store)
    original = T.stat_table(cells, "resnet", "resnet")
    pruned = T.stat_table(cells, "pruned-0", "pruned-0")
    assert np.array_equal(original.to_numpy(), pruned.to_numpy(), equal_nan=True)
    assert (np.diag(original.to_numpy()) > 0.9).all()  # (a real table: the diagonal recovers)
    pruned = T.stat_table(cells, "pruned-0.6", "pruned-0.6")
    assert not np.array_equal(original.to_numpy(), pruned.to_numpy(), equal_nan=True)


def test_the_store_holds_what_was_measured_and_a_rerun_makes_nothing(compressed_run, capsys):
    spec, summary, run = compressed_run
    with Store(run / "results.sqlite", create=False) as store:
        comp = T.compressed_networks(store.networks()).set_index("name")
    sparse = load_checkpoint(next((run / "networks").glob("pruned-0.6-*.ckpt")))
    weights = [m.weight for m in sparse.model.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert comp.loc["pruned-0.6", "sparsity"] == pytest.approx(zeros, abs=1e-12)
    assert sparse.meta["pruned"]["method"] == "magnitude" and sparse.meta["pruned"]["amount"] == 0.6
    thin = load_checkpoint(next((run / "networks").glob("thin-*.ckpt")))
    assert thin.meta["narrowed"] and thin.meta["pruned"]["finetuned_accuracy"] is not None
    assert comp.loc["thin", "parameters"] == sum(p.numel() for p in thin.model.parameters())
    assert comp.loc["thin", "parameters"] < comp.loc["thin", "original_parameters"] / 2
    assert comp.loc["student", "kind"] == "distill" and comp.loc["student", "temperature"] == 2
    assert comp.loc["pruned-0.6", "family"] == "pruned" and comp.loc["pruned-0.6", "level"] == 0.6
    made = {p: p.stat().st_mtime_ns for p in (run / "networks").iterdir()}
    capsys.readouterr()
    again = run_sweep(spec, run, device="cpu", progress=False)
    assert again.skipped == summary.cells and again.done == 0
    assert {p: p.stat().st_mtime_ns for p in (run / "networks").iterdir()} == made
    assert "pruning" not in capsys.readouterr().err


@pytest.mark.slow
def test_report_draws_the_axis_and_table_picks_a_level(compressed_run, tmp_path):
    _, _, run = compressed_run
    page = write_report(run / "results.sqlite", tmp_path / "report").read_text()
    assert "Compressed networks" in page and "magnitude pruning of resnet, amount 0.6" in page
    assert (tmp_path / "report" / "heatmaps" / "compression__pruned.png").is_file()
    out = run_plato("table", str(run / "results.sqlite"), "--level", "0.6",
                    "--pair", "resnet", "pruned", ok=True).stdout
    assert "resnet -> pruned-0.6" in out and "pruned-0 " not in out
    wrong = run_plato("table", str(run / "results.sqlite"), "--level", "0.3", ok=False)
    assert "levels of this store's compression axes are 0, 0.6" in wrong.stderr


BASE = {"networks": {"a": {"checkpoint": "a.ckpt"}}}


@pytest.mark.parametrize("entry, field", [
    ({"prune": {"from": "a", "amount": 1.0}}, "networks.p.prune.amount"),
    ({"prune": {"from": "a", "amount": [0.5, 0.5]}}, "networks.p.prune.amount"),
    ({"prune": {"from": "a", "amount": 0.5, "method": "random"}}, "networks.p.prune.method"),
    ({"prune": {"from": "b", "amount": 0.5}}, "networks.p.prune.from"),
    ({"prune": {"from": "p", "amount": 0.5}}, "networks.p.prune.from"),
    ({"prune": {"amount": 0.5}}, "networks.p.prune.from"),
    ({"prune": {"from": "a", "amount": 0.5, "finetune": {"epochs": 0}}},
     "networks.p.prune.finetune.epochs"),
    ({"prune": {"from": "a", "amount": 0.5, "finetune": {"model": "cnn-2"}}},
     "networks.p.prune.finetune.model"),
    ({"distill": {"teacher": "a", "model": "cnn-2", "temperature": -1}},
     "networks.p.distill.temperature"),
    ({"distill": {"teacher": "a", "model": "cnn-2", "alpha": 2}}, "networks.p.distill.alpha"),
    ({"distill": {"model": "cnn-2"}}, "networks.p.distill.teacher"),
    ({"distill": {"teacher": "a", "model": "cnn-2", "colour": 1}},
     "networks.p.distill.colour"),
    ({"prune": {"from": "a", "amount": 0.5}, "train": {"model": "cnn-2"}}, "networks.p"),
])
def test_a_wrong_compression_field_is_named(entry, field):
    with pytest.raises(SpecError) as err:
        parse_spec({"networks": {**BASE["networks"], "p": entry}})
    assert f"spec field '{field}'" in str(err.value)


def test_family_names_stand_for_their_levels_in_pairs_and_points():
    spec = parse_spec({"networks": {**BASE["networks"],
                                    "p": {"prune": {"from": "a", "amount": [0.25, 0.5]}}},
                       "pairs": [["a", "p"]], "points": {"p": ["layer1.0"]},
                       "diagonal": True})
    assert spec.pairs == [("a", "p-0.25"), ("a", "p-0.5")]
    assert spec.points["p-0.5"] == ["layer1.0"] and spec.points["a"] == "all"
    assert spec.diagonal
    with pytest.raises(SpecError, match="already one"):
        parse_spec({"networks": {"p-0.5": {"checkpoint": "a.ckpt"},
                                 "p": {"prune": {"from": "p-0.5", "amount": [0.5]}}}})


def test_a_channel_pruned_network_travels_and_has_a_narrow_random_control(
        tmp_path, digits, digits_resnet):
    """A Ray worker rebuilds a network from its payload (config and tensors): a narrowed one
    at its own widths; its random control is a fresh network at those widths, its identity
    not the unpruned architecture's."""
    model = prune_network(digits_resnet, PruneConfig("channels", 0.5)).model
    back = Network.from_payload(Network("thin", "trained", model, "id", 0.9).payload()).model
    x = torch.randn(2, *digits.input_shape)
    with torch.no_grad():
        assert torch.equal(back(x), model.eval()(x))
    narrow = random_control("n", load_checkpoint(save_checkpoint(
        tmp_path / "n.ckpt", model, dataset="digits").path), 0, digits, torch.device("cpu"))
    wide = random_control("n", load_checkpoint(save_checkpoint(
        tmp_path / "w.ckpt", digits_resnet, dataset="digits").path), 0, digits,
        torch.device("cpu"))
    assert tensor_shapes(narrow.model) == tensor_shapes(model)
    assert narrow.identity != wide.identity
    assert not torch.equal(narrow.model.fc.weight, model.fc.weight)
