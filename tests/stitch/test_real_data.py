"""Stitching on real MNIST (the PNG copy in ../shared/data)."""

import pytest
import torch

import plato
from plato.stitch import StitchConfig, stitch_networks
from plato.train import Recipe, train
from tests.conftest import MNIST_PNG, need

pytestmark = pytest.mark.slow


def _net(seed, dataset, epochs):
    torch.manual_seed(seed)
    model = plato.create_model("cnn-3", input_shape=dataset.input_shape, width=16)
    if epochs:
        train(model, dataset, Recipe(epochs=epochs, batch_size=64, lr=0.1, seed=seed,
                                     device="cpu"), progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def mnist_nets():
    ds = plato.load_dataset(f"imagefolder:{need(MNIST_PNG)}").subset(train=6000, test=2000)
    return ds, _net(0, ds, 3), _net(1, ds, 3), _net(2, ds, 0)


def test_random_sender_stitches_worse_than_trained(mnist_nets):
    ds, receiver, sender, random_sender = mnist_nets
    config = StitchConfig(epochs=1, lr=1e-2, device="cpu")
    trained_cell, _ = stitch_networks(sender, receiver, "block2", "block2", ds, config=config)
    random_cell, _ = stitch_networks(random_sender, receiver, "block2", "block2", ds,
                                     config=config)
    assert trained_cell.receiver_accuracy > 0.9
    assert trained_cell.stitched_accuracy > 0.85
    assert trained_cell.stitched_accuracy - random_cell.stitched_accuracy > 0.15


def test_match_reaches_lower_activation_mse_than_task(mnist_nets):
    ds, receiver, sender, _ = mnist_nets
    results = {
        objective: stitch_networks(sender, receiver, "block2", "block2", ds,
                                   config=StitchConfig(objective=objective, epochs=1, lr=1e-2,
                                                       device="cpu"))[0]
        for objective in ("task", "match")
    }
    assert results["match"].activation_mse < 0.8 * results["task"].activation_mse
