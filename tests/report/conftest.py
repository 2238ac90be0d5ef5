"""A small finished sweep for the report's tests: two networks on digits, two controls, two
stitch seeds, fits that record whether they converged, linear CKA with a permutation null."""

import pytest

from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from tests.sweep.conftest import write_spec


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, digits_checkpoints):
    folder = tmp_path_factory.mktemp("report")
    spec = write_spec(folder / "s.yaml", {"cnn": digits_checkpoints["cnn"],
                                          "resnet": digits_checkpoints["resnet"]},
                      pairs=[["cnn", "resnet"], ["resnet", "resnet"]], seeds=[0, 1],
                      points={"cnn": ["stem", "pool"], "resnet": ["stem", "layer2.0", "pool"]},
                      objective="lstsq+task",
                      recipe={"budget": "converge", "holdout": 200, "check_every": 5,
                              "patience": 2, "min_steps": 5, "max_steps": 20,
                              "batch_size": 128},
                      measures=["stitch", "linear_cka"], similarity={"permutations": 9})
    run_sweep(load_spec(spec), folder / "run", device="cpu", progress=False)
    return folder / "run"
