"""A finished cell is found again by its key: a change that moved any key would silently re-run
every finished cell of every existing store. The keys below are those the stores written so
far hold (computed by the code before the settings were reorganised, December 2026)."""

from dataclasses import replace

import pytest
import torch

import plato
from plato.checkpoint import save_checkpoint
from plato.stitch import StitchConfig
from plato.sweep.jobs import build_jobs
from plato.sweep.keys import cell_key
from plato.sweep.networks import prepare_networks
from plato.sweep.similarity import run_similarities
from plato.sweep.spec import parse_spec
from plato.sweep.store import Store

A, B, DATA = "a" * 64, "b" * 64, "d" * 64


@pytest.mark.parametrize("config, cell, key", [
    (StitchConfig(), ("layer1.0", "block1", "bn-conv1x1-bn", "area", 0),
     "f3caccce0dab2ac7f1fc06e728df1262a11797617fa520aa43f69a0d30d509d4"),
    (StitchConfig(objective="lstsq+task", epochs=2, lr=0.003),
     ("layer1.0", "block1", "bn-conv1x1-bn", "area", 1),
     "c6c1bb1d79c1e09520d9d75f0ea5d1df71c5ba667b6bc9c7d4be7d6b1347f8d2"),
    (StitchConfig(objective="lstsq+task", epochs=2, optimizer="sgd", lr=0.1, batch_size=64,
                  precision="auto", lstsq_examples=4096, device="cpu"),  # fast, before 16
     ("stem", "pool", "conv1x1", "bilinear", 2),
     "b3fc587804a9143a7bd6bffaa43b2447f3222ef93abf66f92891d97401186b7f"),
    (StitchConfig(objective="lstsq+task", more_epochs=3, improving=0),
     ("stem", "stem", "bn-conv1x1-bn", "area", 0),
     "a312bb2b364cc6f2a42b06440ea22b333ae23711479d3ca565aa14ed94460e72"),
])
def test_cell_keys_are_those_of_existing_stores(config, cell, key):
    sp, rp, stitch, resize, seed = cell
    assert cell_key(A, B, sp, rp, stitch, resize, config, seed, DATA) == key
    # where and how fast a cell runs is not part of it
    speed = replace(config, device="cuda", activation_cache="off", cell_threads=3)
    assert cell_key(A, B, sp, rp, stitch, resize, speed, seed, DATA) == key
    # what decides the result is
    for other in (replace(config, lr=config.lr / 2), replace(config, stacking=False),
                  replace(config, fold_batchnorm=False), replace(config, more_epochs=5),
                  replace(config, budget="converge")):
        assert cell_key(A, B, sp, rp, stitch, resize, other, seed, DATA) != key
    assert cell_key(A, B, sp, rp, stitch, resize, config, seed + 1, DATA) != key


def test_a_spec_gives_the_pinned_keys(tmp_path):
    """From a spec to a job's key, and to a similarity cell's: random controls (architecture
    and seed, no trained weights) of a network on digits, whose content is fixed."""
    digits = plato.load_dataset("digits")
    torch.manual_seed(0)  # the weights do not enter a random control's identity
    net = plato.create_model("resnet-1111", input_shape=digits.input_shape, width=4)
    save_checkpoint(tmp_path / "r.ckpt", net, dataset="digits")
    spec = parse_spec({"name": "pinned", "networks": {"net": {"checkpoint": str(
        tmp_path / "r.ckpt")}}, "pairs": "self", "controls": ["random->random"], "seeds": [1],
        "objective": "lstsq+task", "recipe": {"epochs": 2}, "measures": ["stitch", "cka"]})
    nets = prepare_networks(spec, digits, tmp_path / "run", torch.device("cpu"), progress=False)
    assert digits.fingerprint() == \
        "3c272af25bc56e09f9139ff35ec794c32af8f6720618e18df6345b733ec25a59"
    random = nets[("net", "random")].identity
    assert random == "e3e7e50ef6b6fdf4d9d5235b0b1c235bd99f2ffd5974aeeefe94a3ca55f9395e"
    job, = [j for j in build_jobs(spec, nets, digits.fingerprint())
            if (j.sender_point, j.receiver_point) == ("layer1.0", "layer2.0")]
    assert job.key == "21e0af988d7e9573e993d25170fab96076181c8733575d9c546f97b83809259a"
    with Store(tmp_path / "run" / "results.sqlite") as store:
        assert run_similarities(spec, nets, digits, store, torch.device("cpu"), False) == 1
        cka = store.similarities().set_index(["sender_point", "receiver_point"]).key
    assert cka[("layer1.0", "layer2.0")] == \
        "080066290515461f257ece2979fafeeef0ea1b8a039aae21c1d2238deafb7650"
