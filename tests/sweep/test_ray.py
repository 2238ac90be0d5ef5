"""The Ray executor on a real local Ray cluster gives the local executor's tables."""

import pytest

from plato.sweep import tables as T
from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from plato.sweep.store import Store
from tests.sweep.conftest import write_spec

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = pytest.mark.service  # a real Ray cluster


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_and_local_tables_are_identical(tmp_path, digits_checkpoints, cluster):
    spec = load_spec(write_spec(
        tmp_path / "s.yaml", digits_checkpoints, pairs=[["resnet", "cnn"], ["cnn", "cnn"]],
        controls=["trained->trained", "random->trained"], objective="lstsq+task",
        points={"resnet": ["stem", "layer2.0", "pool"]},
        recipe={"epochs": 1, "batch_size": 256}))
    # One thread per cell on both sides: CPU sums depend on the thread count.
    local = run_sweep(spec, tmp_path / "local", device="cpu", threads=1, progress=False)
    remote = run_sweep(spec, tmp_path / "ray", executor="ray", device="cpu", progress=False)
    assert remote.cells == local.cells == 2 * (3 * 3 + 3 * 3)
    assert remote.done == local.done and remote.failed == 0
    with Store(local.store) as a, Store(remote.store) as b:
        cells_a, cells_b = T.load_cells(a), T.load_cells(b)
        assert set(b.cells().host) and b.integrity_ok()
    for sender, receiver, control in T.table_keys(cells_a):
        for metric in ("stitched_accuracy", "activation_mse", "activation_cka"):
            ta = T.stat_table(cells_a, sender, receiver, control, metric)
            tb = T.stat_table(cells_b, sender, receiver, control, metric)
            assert ta.equals(tb), (sender, receiver, control, metric)
