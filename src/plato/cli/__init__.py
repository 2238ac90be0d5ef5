"""The `plato` command: one module per command group, each registering its commands on one
Typer app (plato.cli.app). Every command takes --json and then prints one JSON object on
stdout; the commands parse, call the library, and print.

    networks    models, data, train, import, eval
    stitching   stitch, replace, saliency, invert
    sweeps      sweep, status, check
    tables      table, similarity, report
    demo        demo

Shared options are declared once (plato.cli.options), output is printed one way
(plato.cli.output). User errors (PlatoError) and faults of the machine (a full disk, a
read-only place: OSError, SQLite's errors) print one line on stderr and exit 1, without a
traceback (PLATO_TRACEBACK=1 shows it).
"""

from __future__ import annotations

import os
import sqlite3
import sys

from safetensors import SafetensorError

from plato.errors import PlatoError, fault_message, printable

# The commands, registered in the order `plato --help` lists them.
# isort: off
from plato.cli import networks, stitching, sweeps, tables, demo  # noqa: E402, F401
from plato.cli.app import app  # noqa: E402
# isort: on


def main() -> None:
    try:
        app()
    except PlatoError as e:
        print(f"plato: error: {printable(str(e))}", file=sys.stderr)
        sys.exit(1)
    except (OSError, sqlite3.Error, SafetensorError) as e:  # a full disk, a read-only place
        if os.environ.get("PLATO_TRACEBACK"):
            raise
        print(f"plato: error: {printable(fault_message(e))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("plato: interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]
