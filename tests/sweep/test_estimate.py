"""The sweep's estimated time: its arithmetic from timed steps, what it counts and what it
leaves out (networks already trained, cells that cannot be stitched)."""

import pytest
import yaml

from plato.data import load_dataset
from plato.stitch import StitchConfig
from plato.sweep import estimate as estimate_module
from plato.sweep.estimate import CONVERGING_STEPS, OVERHEAD, cell_steps, duration, estimate_sweep
from plato.sweep.run import run_sweep, sweep_dataset
from plato.sweep.spec import load_spec
from tests.sweep.conftest import write_spec

STEP = 0.01  # seconds of one timed training step, for every architecture (patched)


@pytest.fixture
def timed_steps(monkeypatch):
    monkeypatch.setattr(estimate_module, "step_seconds",
                        lambda model, batch, data, device, precision=None: STEP)


def estimate_of(path, run_dir):
    spec = load_spec(path)
    whole = load_dataset(spec.dataset.name, root=spec.dataset.root)
    return estimate_sweep(spec, sweep_dataset(spec, whole), whole, run_dir, "cpu"), spec


def test_the_estimate_counts_cells_by_their_receiver_and_networks_still_to_train(
        tmp_path, digits_checkpoints, timed_steps):
    path = write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                      objective="lstsq+task", recipe={"budget": "converge"},
                      controls=["trained->trained"], pairs=[["cnn", "cnn"]])
    one, spec = estimate_of(path, tmp_path / "run")
    assert one.networks == 0  # a checkpoint: nothing to train
    # cnn-2: stem, block1, pool; every sender point into stem (3/3 of the receiver's steps),
    # block1 (2/3) and pool (1/3), except the vector `pool` into the spatial stem and block1
    train = len(sweep_dataset(spec).train)
    steps = cell_steps(spec.stitch_config, train)
    assert steps == CONVERGING_STEPS
    shares = 2 * (3 + 2 + 1) / 3 + 1 / 3
    assert one.cells == pytest.approx(steps * OVERHEAD * STEP * shares)
    raw = yaml.safe_load(path.read_text())
    raw["seeds"] = [0, 1, 2]
    raw["networks"]["fresh"] = {"train": {"model": "cnn-2", "width": 4, "epochs": 2}}
    raw["pairs"] = [["cnn", "cnn"], ["fresh", "cnn"]]
    path.write_text(yaml.safe_dump(raw))
    three, spec = estimate_of(path, tmp_path / "run")
    assert three.cells == pytest.approx(2 * 3 * one.cells)  # two pairs, three seeds
    # fresh is trained for 2 epochs of the sweep's training split, at its timed step per
    # stitch batch
    examples = len(sweep_dataset(spec).train)
    assert three.networks == pytest.approx(STEP * 2 * examples / spec.stitch_config.batch_size)
    assert "training networks" in three.describe() and "rough" in three.describe()


def test_a_trained_network_costs_nothing_more_and_the_closed_form_little(
        tmp_path, digits_checkpoints, timed_steps):
    path = write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                      controls=["trained->trained"], pairs=[["fresh", "cnn"]],
                      points={"fresh": ["stem"], "cnn": ["stem"]})
    raw = yaml.safe_load(path.read_text())
    raw["networks"]["fresh"] = {"train": {"model": "cnn-2", "width": 4, "epochs": 1}}
    path.write_text(yaml.safe_dump(raw))
    before, spec = estimate_of(path, tmp_path / "run")
    assert before.networks > 0
    run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    after, _ = estimate_of(path, tmp_path / "run")
    assert after.networks == 0 and after.cells == before.cells
    # the closed form alone: one forward pass over the training split, a third of a step each
    batches = len(sweep_dataset(spec).train) // spec.stitch_config.batch_size
    assert cell_steps(spec.stitch_config, len(sweep_dataset(spec).train)) == batches / 3
    assert cell_steps(StitchConfig(epochs=2, batch_size=100), 1000) == 20


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (0.2, 45, 600, 5400, 4 * 3600)] == [
        "1 s", "45 s", "10 min", "1.5 h", "4.0 h"]
