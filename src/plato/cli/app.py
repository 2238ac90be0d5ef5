"""The `plato` Typer application that every command group registers on, and the options
every command shares, given before the command (`plato --max-decoded-gb 4 train ...`)."""

import os
from typing import Annotated

import typer

from plato.data.datasets import DEFAULT_MAX_DECODED_GB

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Plato: compare neural networks by model stitching.",
)


@app.callback()
def every_command(max_decoded_gb: Annotated[float | None, typer.Option(
        "--max-decoded-gb", help="The most GiB an image folder may decode to (held in memory, "
        f"cached on disk; default {DEFAULT_MAX_DECODED_GB:g}, or $PLATO_MAX_DECODED_GB).")]
                  = None) -> None:
    """Plato: compare neural networks by model stitching."""
    if max_decoded_gb is not None:  # read where images are decoded (plato.data.datasets)
        os.environ["PLATO_MAX_DECODED_GB"] = repr(max_decoded_gb)
