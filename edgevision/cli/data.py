"""`edgevision data synth|video`: the synthetic road-sign dataset and dash-cam clip."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

SYNTH_HELP = """Write a seeded synthetic road-sign dataset (same seed, same bytes).

--task classification (default): OUT/<class>/0000.jpg (ImageFolder), the 12
sign classes plus `background` (scenes with no sign or only a far one).

--task detection: OUT/images/000000.jpg and OUT/annotations.json (COCO
boxes), scenes with 0-5 signs each, far to close, some occluded or cut."""

_DEFAULT_SIZE = {"classification": "160x120", "detection": "320x240"}


class Task(str, Enum):
    """What `data synth` writes a dataset for."""

    classification = "classification"
    detection = "detection"


def _synth_classification(
    out: Path, per_class: int | None, seed: int, size: str, classes: list[str] | None
) -> tuple[Path, str]:
    from edgevision.data.synth import generate_dataset, resolve_classes

    names = resolve_classes(classes)
    per_class = 100 if per_class is None else per_class
    path = generate_dataset(out, per_class=per_class, seed=seed, size=size, classes=names)
    return path, f"{len(names)} classes × {per_class} images → {path}"


def _synth_detection(
    out: Path, images: int | None, seed: int, size: str, classes: list[str] | None
) -> tuple[Path, str]:
    from edgevision.data.synth_detect import (
        generate_detection_dataset,
        read_annotations,
        resolve_detection_classes,
    )

    names = resolve_detection_classes(classes)
    images = 600 if images is None else images
    path = generate_detection_dataset(out, images=images, seed=seed, size=size, classes=names)
    boxes = len(read_annotations(path)["annotations"])
    return path, f"{images} images, {boxes} boxes, {len(names)} classes → {path}"


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
        task: Task = typer.Option(Task.classification, help="What the dataset is for."),
        per_class: int | None = typer.Option(
            None, "--per-class", help="Images per class (classification; default 100)."
        ),
        images: int | None = typer.Option(None, help="Scenes (detection; default 600)."),
        seed: int = typer.Option(0, help="Random seed."),
        size: str | None = typer.Option(
            None, help="Image size WIDTHxHEIGHT (default 160x120, detection 320x240)."
        ),
        classes: list[str] | None = typer.Option(
            None, "--classes", help="Only these classes (repeat or comma-separate)."
        ),
        preview: Path | None = typer.Option(None, help="Also write a contact sheet PNG here."),
    ) -> None:
        import time

        from edgevision.errors import DataError
        from edgevision.fileio import check_output_file

        detect = task is Task.detection
        wrong, right = ("--per-class", "--images N") if detect else ("--images", "--per-class N")
        if (per_class if detect else images) is not None:
            raise DataError(f"{wrong} does not apply to --task {task.value}", f"use {right}")
        if preview:
            check_output_file(preview, "--preview")
        start = time.perf_counter()
        run = _synth_detection if detect else _synth_classification
        count = images if detect else per_class
        path, summary = run(out, count, seed, size or _DEFAULT_SIZE[task.value], classes)
        took = time.perf_counter() - start
        Console().print(f"{summary} ({took:.1f} s)")
        if preview:
            from edgevision.data import synth, synth_detect

            sheet = synth_detect.detection_contact_sheet if detect else synth.contact_sheet
            Console().print(f"preview: {sheet(path, preview)}")

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
