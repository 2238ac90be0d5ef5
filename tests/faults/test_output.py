"""What reaches the user's terminal, and what a finished store needs to be read (issue 33):
a name with terminal escapes is printed escaped; a `python:` factory that fails is one line
naming it and its exception; a finished store copied alone onto read-only media reads whole,
and reading it writes nothing beside it."""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from plato.errors import printable
from tests.helpers import one_line_error, run_plato

ESCAPES = "resnet-\x1b]0;pwned\x07\x1b[2J\x9b"  # retitle the window, clear the screen, CSI


def test_a_name_with_terminal_escapes_is_printed_escaped():
    failed = run_plato("train", ESCAPES, "--dataset", "digits", "--out", "/nonexistent/x.ckpt")
    line = one_line_error(failed)
    assert not any(c in failed.stderr for c in "\x1b\x07\x9b"), repr(failed.stderr)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b" in line, line
    assert printable("tab\tand\nnewline stay; \x00 \x7f go") == \
        "tab\tand\nnewline stay; \\x00 \\x7f go"


def test_a_folder_name_with_terminal_escapes_is_printed_escaped(tmp_path):
    """A dataset's folder name reaches the progress bars, the description and the errors:
    escaped in each (its images decoded, and refused by a lowered size limit)."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / f"data{ESCAPES}"
    for split in ("train", "test"):
        (folder / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / split / "a" / "0.png")
    env = {**os.environ, "PLATO_CACHE": str(tmp_path / "cache")}
    read = run_plato("data", f"imagefolder:{folder}", ok=True, env=env)
    refused = run_plato("--max-decoded-gb", "1e-9", "data", f"imagefolder:{folder}",
                        env={**env, "PLATO_CACHE": str(tmp_path / "other")})
    one_line_error(refused, "\\x1b]0;pwned\\x07")
    for out in (read.stdout, read.stderr, refused.stderr):
        assert not any(c in out for c in "\x07\x9b") and "\x1b]" not in out, repr(out)
    assert "\\x1b]0;pwned\\x07" in read.stdout


@pytest.mark.parametrize("factory, what", [("raises", "RuntimeError building the model: CUDA "
                                                       "out of memory. Tried to allocate"),
                                           ("exits", "SystemExit building the model: 3")])
def test_a_factory_that_fails_is_one_line_naming_it(factory, what, tmp_path):
    name = f"python:tests.models.factories:{factory}"
    failed = run_plato("import", name, "--dataset", "digits", "--out", tmp_path / "x.ckpt")
    one_line_error(failed, name, what)
    assert "second line" not in failed.stderr
    assert not (tmp_path / "x.ckpt").exists()


@pytest.fixture
def finished_store(tmp_path, digits_checkpoints):
    from plato.sweep.run import run_sweep
    from plato.sweep.spec import load_spec
    from tests.sweep.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.yaml", {"a": digits_checkpoints["resnet"]},
                                pairs="self", controls=["trained->trained"],
                                measures=["stitch", "linear_cka"], points={"a": [0, 1]}))
    summary = run_sweep(spec, tmp_path / "run", device="cpu", progress=False)
    assert summary.done == summary.cells == 4
    return tmp_path / "run" / "results.sqlite"


def test_a_finished_store_copied_alone_reads_whole_from_read_only_media(finished_store):
    """The store file alone (no -wal, no -shm: the sweep checkpointed its WAL) in a folder
    this process cannot write: `Store` reads every cell and similarity and creates nothing
    beside it. As root, permissions do not bind: the read runs with the effective ids of
    nobody (65534)."""
    from plato.sweep.store import Store

    with Store(finished_store, create=False) as store:
        want = (len(store.cells()), len(store.similarities()))
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shutil.copy(finished_store, folder / "results.sqlite")
        os.chmod(folder / "results.sqlite", stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(folder, 0o555)
        before = sorted(os.listdir(folder))
        root = os.geteuid() == 0
        if root:
            os.setegid(65534)
            os.seteuid(65534)
        try:
            with Store(folder / "results.sqlite", create=False) as store:
                got = (len(store.cells()), len(store.similarities()))
                assert "converged" in store.cells().columns  # a column the reader adds
            after = sorted(os.listdir(folder))
        finally:
            if root:
                os.seteuid(0)
                os.setegid(0)
        assert got == want and want[0] == 4 and want[1] > 0, (got, want)
        assert after == before == ["results.sqlite"], after
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


def test_a_sweep_with_failed_cells_exits_3_saying_how_to_retry(tmp_path, digits_checkpoints,
                                                               monkeypatch, capsys):
    """Cells that fail (a non-finite activation at one sender point) leave the sweep going and
    its exit code 3, with how many failed and the command that retries them (in --json too);
    a rerun that does not retry still exits 3 (the store still holds them); retried without
    the fault, 0."""
    import json
    import sys

    import plato.stitch.run
    from plato.cli import main
    from plato.stitch.activations import Activations
    from tests.sweep.conftest import poison_sender_point, write_spec

    spec = write_spec(tmp_path / "s.yaml", {"resnet": digits_checkpoints["resnet"]},
                      controls=["trained->trained"], objective="task",
                      points=["stem", "layer1.0"], recipe={"epochs": 1, "batch_size": 256})

    def sweep(*extra) -> tuple[int, dict, str]:
        monkeypatch.setattr(sys, "argv", ["plato", "sweep", str(spec), "--out",
                                          str(tmp_path / "run"), "--device", "cpu", "--quiet",
                                          "--json", *extra])
        with pytest.raises(SystemExit) as stop:
            main()
        out = capsys.readouterr()
        return stop.value.code, json.loads(out.out), out.err

    poison_sender_point(monkeypatch, "layer1.0")
    code, summary, err = sweep()
    assert code == 3 and summary["failed"] == summary["failed_stored"] == 2, summary
    assert summary["exit_code"] == 3 and summary["retry"].endswith("--retry-failed")
    assert "plato: 2 cell(s) of the sweep failed" in err and summary["retry"] in err
    code, summary, _ = sweep()
    assert code == 3 and summary["skipped"] == 4 and summary["failed_stored"] == 2
    monkeypatch.setattr(plato.stitch.run, "Activations", Activations)
    code, summary, err = sweep("--retry-failed")
    assert code in (0, None) and summary["failed_stored"] == 0 and summary["retry"] is None
    assert "failed (each" not in err
