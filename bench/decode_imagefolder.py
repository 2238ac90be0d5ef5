"""Decoding an image folder (issue 33): wall time and peak memory of the first load of an
archive, its cache fresh, each run in its own process (its own peak).

    python bench/decode_imagefolder.py [--archive PATH] [--runs 3] [--src OTHER/src]

`--src` runs the same measurement with another checkout's Plato (e.g. a `git worktree` of the
commit before a change) in the same invocation, for a comparison on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CIFAR10

ONE_LOAD = """
import json, resource, sys, time
from plato.data import load_dataset
start = time.perf_counter()
data = load_dataset("imagefolder:" + sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024, "train": len(data.train), "test": len(data.test),
    "shape": list(data.input_shape)}))
"""


def one_load(archive: Path, src: str | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PLATO_CACHE": cache}
        if src:
            env["PYTHONPATH"] = src
        out = subprocess.run([sys.executable, "-c", ONE_LOAD, str(archive)], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archive", type=Path, default=CIFAR10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--src", action="append", default=[],
                        help="another Plato's src folder to measure alongside this one")
    args = parser.parse_args()
    for src in [None, *args.src]:
        for run in range(args.runs):
            row = one_load(args.archive, src)
            print(json.dumps({"plato": src or "this checkout", "run": run,
                              "archive": args.archive.name, **row}), flush=True)


if __name__ == "__main__":
    main()
