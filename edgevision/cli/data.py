"""`edgevision data synth|video`: the synthetic road-sign dataset and dash-cam clip."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `data` command group."""
    data = typer.Typer(
        help="Generate demo data: synthetic road signs and a dash-cam clip.", no_args_is_help=True
    )
    app.add_typer(data, name="data")
