"""`edgevision data synth|video`: the synthetic road-sign dataset and dash-cam clip."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

SYNTH_HELP = """Write a seeded synthetic road-sign dataset as OUT/<class>/0000.jpg (ImageFolder).

12 sign classes plus `background` (road scenes with no sign or only a far-away one).
The same seed gives the same bytes."""

VIDEO_HELP = """Write a synthetic dash-cam clip OUT.mp4 and its per-frame ground truth OUT.json.

Signs of the same classes as `data synth` appear at the roadside and grow as the car approaches.
The same seed gives the same bytes."""


def register(app: typer.Typer) -> None:
    """Add the `data` command group."""
    data = typer.Typer(
        help="Generate demo data: synthetic road signs and a dash-cam clip.", no_args_is_help=True
    )
    app.add_typer(data, name="data")

    @data.command("synth", help=SYNTH_HELP)
    def synth_cmd(
        out: Path = typer.Argument(..., help="Output folder (a new or previous synth folder)."),
        per_class: int = typer.Option(100, "--per-class", help="Images per class."),
        seed: int = typer.Option(0, help="Random seed."),
        size: str = typer.Option("160x120", help="Image size WIDTHxHEIGHT."),
        classes: list[str] | None = typer.Option(
            None, "--classes", help="Only these classes (repeat or comma-separate)."
        ),
        preview: Path | None = typer.Option(None, help="Also write a contact sheet PNG here."),
    ) -> None:
        import time

        from edgevision.data.synth import contact_sheet, generate_dataset, resolve_classes
        from edgevision.fileio import check_output_file

        names = resolve_classes(classes)
        if preview:
            check_output_file(preview, "--preview")
        start = time.perf_counter()
        path = generate_dataset(out, per_class=per_class, seed=seed, size=size, classes=names)
        took = time.perf_counter() - start
        Console().print(f"{len(names)} classes × {per_class} images → {path} ({took:.1f} s)")
        if preview:
            Console().print(f"preview: {contact_sheet(path, preview)}")

    @data.command("video", help=VIDEO_HELP)
    def video_cmd(
        out: Path = typer.Argument(..., help="Output clip, ending in .mp4."),
        seconds: float = typer.Option(20.0, help="Clip length in seconds."),
        fps: float = typer.Option(15.0, help="Frames per second."),
        size: str = typer.Option("320x240", help="Frame size WIDTHxHEIGHT."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        from collections import Counter

        from edgevision.data.video import read_truth, write_video

        path = write_video(out, seconds=seconds, fps=fps, size=size, seed=seed)
        truth = read_truth(path)
        labels = Counter(f["label"] for f in truth["frames"])
        signs = sum(n for name, n in labels.items() if name != "background")
        Console().print(
            f"{len(truth['frames'])} frames → {path}; ground truth {path.with_suffix('.json')} "
            f"({signs} frames with a classifiable sign, {len(labels) - 1} sign classes)"
        )
