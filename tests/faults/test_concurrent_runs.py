"""Two sweeps into one run folder: one runs, the other is refused or waits; a killed one
leaves nothing behind that blocks the next."""

import subprocess
import sys
import time

import pytest

from plato.sweep.run import run_sweep
from plato.sweep.spec import load_spec
from tests.sweep.conftest import write_spec


@pytest.mark.slow
def test_one_sweep_per_run_folder(tmp_path, digits_checkpoints):
    """A second sweep into a run folder that a live sweep holds is refused (naming the
    holder) before any work, or waits for it with `wait`; a holder killed with SIGKILL leaves
    no lock behind."""
    from plato.errors import PlatoError

    spec = load_spec(write_spec(tmp_path / "s.yaml", {"cnn": digits_checkpoints["cnn"]},
                                controls=["trained->trained"], points=["block1"]))
    run = tmp_path / "run"
    run.mkdir()

    def holder(seconds):
        code = ("import sys, time; from plato.sweep.lock import hold_run_folder\n"
                "with hold_run_folder(sys.argv[1]):\n"
                "    print('held', flush=True); time.sleep(float(sys.argv[2]))")
        proc = subprocess.Popen([sys.executable, "-c", code, str(run), str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        return proc

    proc = holder(60)
    with pytest.raises(PlatoError, match=f"another plato sweep is running in .*pid {proc.pid}"):
        run_sweep(spec, run, device="cpu", progress=False)
    assert not (run / "results.sqlite").exists()  # refused before any work
    proc.kill()
    proc.wait()
    assert run_sweep(spec, run, device="cpu", progress=False).done == 1  # no stale lock
    proc = holder(1.5)
    start = time.perf_counter()
    summary = run_sweep(spec, run, device="cpu", progress=False, wait=True)
    assert summary.skipped == 1 and time.perf_counter() - start > 1  # it waited its turn
    proc.wait()
