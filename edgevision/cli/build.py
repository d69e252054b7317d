"""`edgevision build` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("build", help="Not built yet.", hidden=True)
    def _cmd() -> None:
        from edgevision.errors import EdgeVisionError

        raise EdgeVisionError("'edgevision build' is not built yet in this version")
