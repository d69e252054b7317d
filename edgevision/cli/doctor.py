"""`edgevision doctor`: what this device can do, and whether a bundle can run here."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Show what this device can run: Python, NumPy, OpenCV (version, GStreamer / FFmpeg /
CUDA in its build, the file loaded, a PyPI wheel shadowing the system one), ONNX Runtime,
TensorRT, the CUDA device, the JetPack / L4T release and the cameras; then, for each source kind
and backend, whether it works here and the fix when it does not.

--bundle B also verifies B, chooses its backend as `edgevision run` would, loads it (TensorRT:
the engine built for this GPU and TensorRT) and runs one inference; exit code 3 when B cannot
run here. Torch-free; takes about a second."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("doctor", help=HELP)
    def doctor_cmd(
        bundle: Path | None = typer.Option(None, "--bundle", help="Check this bundle runs here."),
        backend: str = typer.Option("auto", help="With --bundle: auto, ort or tensorrt."),
        json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
    ) -> None:
        from rich.console import Console

        from edgevision.doctor import EXIT_CANNOT_RUN, diagnose
        from edgevision.doctor.render import render
        from edgevision.fileio import check_output_file

        if json_out is not None:
            check_output_file(json_out, "--json")
        report = diagnose(bundle, backend)
        console = Console()
        console.print(render(report))
        if json_out is not None:
            console.print(f"wrote {report.save(json_out)}", highlight=False)
        if not report.ok:
            raise typer.Exit(EXIT_CANNOT_RUN)
