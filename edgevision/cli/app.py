"""The `edgevision` command. Each sub-module adds its command(s) with ``register(app)``.

Command modules import the heavy API inside the command function, so `edgevision --help` and
`edgevision run` start without torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer
from rich.console import Console

from edgevision import __version__
from edgevision.errors import EdgeVisionError

COMMAND_MODULES = (
    "data",
    "train",
    "build",
    "engine",
    "inspect",
    "run",
    "profile",
    "doctor",
    "demo",
)

app = typer.Typer(
    name="edgevision",
    help="Fine-tune, quantize to INT8, run and profile vision models on embedded GPUs and CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgevision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """edgevision: train → build → run / profile."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"edgevision.cli.{_name}").register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: user errors print as one message (no traceback) and exit 2."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="edgevision")
    except EdgeVisionError as exc:
        from rich.markup import escape

        # escape(): a message may hold brackets (`pip install 'edgevision[train]'`), not markup.
        err = Console(stderr=True, soft_wrap=True)  # one line per message, however long
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        if exc.fix:
            err.print(f"[yellow]fix:[/] {escape(exc.fix)}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)
