"""One sweep per run folder at a time.

A sweep holds an advisory lock (flock) on `sweep.lock` in its run folder from before it trains
any network until it returns. The kernel drops the lock when the process ends, however it ends
(SIGKILL included), so a killed sweep never blocks the next one; the file only says who held
it last, for the message. Readers (`plato table`, `plato report`, `plato check`) take no lock:
SQLite gives them a consistent view while a sweep writes. flock is local to one machine: two
sweeps on one network file system from two machines are not kept apart.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plato.errors import PlatoError, printable

LOCK_FILE = "sweep.lock"


@contextmanager
def hold_run_folder(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold `run_dir` for one sweep; another sweep holding it is an error, or with `wait`
    this waits until it ends."""
    path = Path(run_dir) / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                raise PlatoError(f"another plato sweep is running in {run_dir} ({holder}): "
                                 "wait for it to finish, add --wait to start when it has, "
                                 "or choose another --out") from None
            print(printable(f"waiting for the sweep running in {run_dir} ({holder})"),
                  file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield  # closing the file releases the lock
