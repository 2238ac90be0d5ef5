"""The SLURM executor against a real single-node SLURM (`.ci/slurm-start`): the store it
writes equals the local executor's bit for bit; a task cancelled mid-sweep fails its group
only, a driver killed while tasks are queued is restarted without submitting them again, and
one `--retry-failed` rerun completes the sweep with nothing lost or duplicated."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from plato.errors import PlatoError
from plato.sweep.run import run_sweep
from plato.sweep.slurm import SlurmOptions
from plato.sweep.spec import load_spec
from tests.helpers import plato_command, run_plato
from tests.sweep.conftest import write_spec


def _slurm_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "UP" in ping.stdout


pytestmark = [pytest.mark.service,  # a real SLURM cluster
              pytest.mark.skipif(not _slurm_up(), reason="no SLURM cluster here: "
                                 ".ci/slurm-start starts a single-node one (Debian's slurm-wlm "
                                 "and munge)")]
pytest.importorskip("submitit", reason="the slurm extra is not installed")


def _cells(db):
    """Every stored column of every cell but when, where and how long it ran, by key."""
    con = sqlite3.connect(db)
    columns = [r[1] for r in con.execute("PRAGMA table_info(cells)")
               if r[1] not in ("started", "finished", "host", "seconds")]
    rows = {r[0]: r for r in con.execute(f"SELECT {', '.join(columns)} FROM cells")}
    con.close()
    return rows


def test_the_store_is_the_local_executors_bit_for_bit(tmp_path, digits_checkpoints):
    spec = load_spec(write_spec(tmp_path / "s.yaml", digits_checkpoints,
                                pairs=[["resnet", "cnn"]],
                                points={"resnet": ["layer1.0", "layer3.0"]}))
    local = run_sweep(spec, tmp_path / "local", device="cpu", threads=1, group_size=6,
                      progress=False)
    slurm = run_sweep(spec, tmp_path / "slurm", executor="slurm", device="cpu", threads=1,
                      group_size=6, progress=False,
                      slurm=SlurmOptions(time_min=5, setup=[f"touch {tmp_path}/set-up"]))
    assert slurm.cells == local.cells == 2 * 2 * 3 and slurm.failed == 0  # two tasks
    assert (tmp_path / "set-up").exists()  # each task ran the setup lines first
    assert _cells(slurm.store) == _cells(local.store)
    assert not list((tmp_path / "slurm" / "slurm" / "results").glob("*"))  # all merged


def _tasks(name="plato-"):
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %j"], capture_output=True,
                         text=True).stdout
    return [line.split()[:2] for line in out.splitlines() if name in line]


def test_a_cancelled_task_and_a_killed_driver_lose_nothing(tmp_path, digits_checkpoints):
    spec_path = write_spec(tmp_path / "s.yaml", digits_checkpoints, name="cancel",
                           pairs=[["cnn", "cnn"]], controls=["trained->trained"])
    out = tmp_path / "run"
    cmd = plato_command("sweep", spec_path, "--out", out, "--executor", "slurm", "--device",
                        "cpu", "--threads", "1", "--group-size", "3", "--array-parallelism",
                        "1", "--time-min", "5", "--quiet", "--json")
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, cancelled = time.time() + 120, None
    while cancelled is None and time.time() < deadline:  # the first task, once it runs
        running = [task for task, state in _tasks("plato-cancel") if state == "RUNNING"]
        if running:
            cancelled = running[0]
            subprocess.run(["scancel", cancelled], check=True)
        time.sleep(0.1)
    assert cancelled is not None, "no task ran"
    db = out / "results.sqlite"
    while time.time() < deadline:  # the driver records the cancelled group failed
        con = sqlite3.connect(db, timeout=5)
        failed = con.execute("SELECT count(*) FROM cells WHERE status = 'failed'").fetchone()[0]
        con.close()
        if failed:
            break
        time.sleep(0.2)
    assert failed == 3, "the cancelled task's group, and only it, failed"
    os.kill(driver.pid, signal.SIGKILL)  # while the other tasks are queued or running
    driver.wait()
    held = json.loads((out / "slurm" / "submitted.json").read_text())
    reason = sqlite3.connect(db).execute(
        "SELECT reason FROM cells WHERE status = 'failed'").fetchone()[0]
    assert "ended without a result" in reason and "--retry-failed" in reason
    status = run_plato("status", out, "--json")
    status = json.loads(status.stdout)  # what a user sees with no driver running
    assert status["cells"]["failed"] == 3 and status["slurm"]["tasks"] == 3
    assert sum(status["slurm"][k] for k in ("queued", "running", "finished",
                                            "merged or ended")) == 3

    rerun = subprocess.run(cmd + ["--retry-failed"], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["cells"] == 9 and summary["failed"] == 0
    cells = _cells(db)
    assert len(cells) == 9
    statuses = sqlite3.connect(db).execute("SELECT status, count(*) FROM cells GROUP BY status")
    assert dict(statuses.fetchall()) == {"done": 7, "unstitchable": 2}  # (pool -> a map)
    after = json.loads((out / "slurm" / "submitted.json").read_text())
    again = [g for g in held if g in after and after[g]["job"] != held[g]["job"]]
    assert len(again) == 1  # only the cancelled group was submitted again


def test_a_refused_submission_is_slurms_own_line(tmp_path, digits_checkpoints):
    spec = load_spec(write_spec(tmp_path / "s.yaml", digits_checkpoints, pairs=[["cnn", "cnn"]],
                                controls=["trained->trained"]))
    with pytest.raises(PlatoError, match="SLURM refused the submission: sbatch: error: "
                       "invalid partition specified: nowhere"):
        run_sweep(spec, tmp_path / "run", executor="slurm", device="cpu", progress=False,
                  slurm=SlurmOptions(partition="nowhere"))
