"""The `plato` Typer application that every command group registers on."""

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Plato: compare neural networks by model stitching.",
)
