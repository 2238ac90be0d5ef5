"""The `plato` command as tests run it: one home for the CLI runners every test file uses.

    plato_command(*args)  the command line of `plato ARGS` (for a test that starts and kills it)
    run_plato(*args)      the command as a user runs it: a real subprocess (`python -m plato`)
    plato_json(*args)     the same with --json, which must succeed: its JSON object
    entry_point(args)     the entry point (`plato.cli.main`) in this process: for error cases,
                          sparing a Python start each; the process boundary itself is tested
                          by the cases that run a subprocess
    one_line_error(proc)  a failed run's stderr is one `plato: error:` line, no traceback
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

import pytest

CLI_TIMEOUT = 600  # seconds: a command that hangs fails its test instead of the whole suite


def plato_command(*args) -> list[str]:
    """The command line that runs `plato ARGS` with this Python."""
    return [sys.executable, "-m", "plato", *map(str, args)]


def run_plato(*args, ok: bool | None = None, cwd=None, env=None,
              file_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run `plato ARGS` in a subprocess. `ok`: assert it succeeded (True) or failed (False);
    `file_limit`: a disk that takes that many bytes per file, then refuses (EFBIG)."""

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    proc = subprocess.run(plato_command(*args), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=CLI_TIMEOUT, preexec_fn=limited if file_limit else None)
    if ok is not None:
        assert (proc.returncode == 0) == ok, proc.stderr
    return proc


def plato_json(*args, cwd=None) -> dict:
    """`plato ARGS --json`, which must succeed: its JSON object."""
    return json.loads(run_plato(*args, "--json", ok=True, cwd=cwd).stdout)


def entry_point(args, monkeypatch, capsys) -> tuple[int, str]:
    """The command's entry point (`plato.cli.main`, what `python -m plato` runs) in this
    process: (exit code, stderr)."""
    from plato.cli import main

    monkeypatch.setattr(sys, "argv", ["plato", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    """The `plato: error:` lines of a stderr."""
    return [ln for ln in err.strip().splitlines() if ln.startswith("plato: error")]


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """A run that failed with one `plato: error:` line (containing `words`) as its last line
    and no traceback: that line."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("plato: error: "), proc.stderr
    for word in words:
        assert word in last, last
    return last
