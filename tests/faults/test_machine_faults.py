"""Faults of the machine, as a user meets them through the `plato` command: a full disk and a
read-only place give one line saying what to do (exit 1, no traceback), and the work finished
before the fault is kept: running again resumes."""

import json
import os
import subprocess

import pytest

from tests.helpers import one_line_error, run_plato

SPEC = """name: tiny
dataset: digits
networks: {cnn: {train: {model: cnn-2, width: 4, epochs: 1}}}
pairs: self
points: [stem, block1]
objective: lstsq
"""


@pytest.mark.slow
@pytest.mark.parametrize("width, file_limit, where", [
    (128, 300_000, "networks/cnn-"),  # a 1.2 MB checkpoint; the store fits
    (4, 20_000, "results.sqlite")])  # the store does not fit
def test_a_full_disk_is_one_line_and_a_rerun_resumes(tmp_path, width, file_limit, where):
    (tmp_path / "spec.yaml").write_text(SPEC.replace("width: 4", f"width: {width}"))
    proc = run_plato("sweep", "spec.yaml", "--out", "run", "--quiet", cwd=tmp_path,
                 file_limit=file_limit)
    one_line_error(proc, where, "free")
    again = run_plato("sweep", "spec.yaml", "--out", "run", "--quiet", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["cells"] == 4 and summary["failed"] == 0
    assert summary["done"] + summary["skipped"] == 4


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write into: chmod for a user; as root (whom chmod does not stop),
    a read-only tmpfs where mounting is allowed."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode:
        pytest.skip(f"root cannot mount a read-only tmpfs here: {mount.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_a_read_only_place_is_one_line(tmp_path, read_only):
    (tmp_path / "spec.yaml").write_text(SPEC)
    one_line_error(run_plato("sweep", "spec.yaml", "--out", str(read_only / "run"), "--quiet",
                         cwd=tmp_path), "cannot write", "read-only")
    done = run_plato("sweep", "spec.yaml", "--out", "run", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    one_line_error(run_plato("report", "run/results.sqlite", "--out", str(read_only / "report"),
                         cwd=tmp_path), "cannot write", "read-only")
    env_cache = {**os.environ, "PLATO_CACHE": str(read_only / "cache")}
    proc = run_plato("train", "cnn-2", "--dataset", "digits", "--epochs", "1", "--out",
                     str(read_only / "net.ckpt"), cwd=tmp_path, env=env_cache)
    one_line_error(proc, "cannot write", "read-only")


def test_each_fault_of_the_machine_has_its_advice():
    """The words the libraries use for each fault map to the same advice (SQLite gives no
    errno; safetensors gives it inside its message)."""
    import errno
    import sqlite3

    from plato.errors import fault_message

    full = [OSError(errno.ENOSPC, "No space left on device", "x.ckpt"),
            sqlite3.OperationalError("database or disk is full"),
            RuntimeError("Error while serializing: I/O error: File too large (os error 27)")]
    for e in full:
        assert fault_message(e).startswith("no space left to write"), e
    read_only = [OSError(errno.EROFS, "Read-only file system", "run"),
                 OSError(errno.EACCES, "Permission denied", "run"),
                 sqlite3.OperationalError("attempt to write a readonly database")]
    for e in read_only:
        assert fault_message(e).startswith("cannot write"), e
    assert fault_message(OSError(errno.ENOENT, "No such file", "a.yaml")) == \
        "no such file or folder (a.yaml)"
