"""The typer command-line interface: one thin module per command over the public API."""
