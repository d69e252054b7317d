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
boxes), scenes with 0-5 signs each, far to close, some occluded or cut.

--task segmentation: OUT/images/000000.jpg, OUT/masks/000000.png (one class
id per pixel) and OUT/classes.txt: background, road, lane_marking, sign."""

_DEFAULT_SIZE = {"classification": "160x120", "detection": "320x240", "segmentation": "320x240"}


class Task(str, Enum):
    """What `data synth` writes a dataset for."""

    classification = "classification"
    detection = "detection"
    segmentation = "segmentation"


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


def _synth_segmentation(
    out: Path, images: int | None, seed: int, size: str, classes: list[str] | None
) -> tuple[Path, str]:
    from edgevision.data.synth_segment import generate_segmentation_dataset

    images = 600 if images is None else images
    path, summary = generate_segmentation_dataset(
        out, count=images, seed=seed, size=size, classes=classes
    )
    pixels = summary["pixels_per_class"]
    total = sum(pixels.values()) or 1
    shares = ", ".join(f"{name} {100 * n / total:.1f}%" for name, n in list(pixels.items())[1:])
    names = summary["classes"]
    return path, f"{images} images, {len(names)} classes ({shares} of the pixels) → {path}"


_SYNTH = {
    Task.classification: _synth_classification,
    Task.detection: _synth_detection,
    Task.segmentation: _synth_segmentation,
}


VIDEO_HELP = """Write a synthetic dash-cam clip OUT.mp4 and its per-frame ground truth OUT.json.

Signs of the same classes as `data synth` appear at the roadside and grow as the car approaches.
The same seed gives the same bytes.

--task segmentation: the same frames, with a class-id mask per frame in OUT.masks/ and OUT.json
holding the segmentation truth (labels, fps, frame count, mask folder) instead of the signs'."""


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
        images: int | None = typer.Option(
            None, help="Scenes (detection, segmentation; default 600)."
        ),
        seed: int = typer.Option(0, help="Random seed."),
        size: str | None = typer.Option(
            None,
            help="Image size WIDTHxHEIGHT (default 160x120; detection, segmentation 320x240).",
        ),
        classes: list[str] | None = typer.Option(
            None, "--classes", help="Only these classes (repeat or comma-separate)."
        ),
        preview: Path | None = typer.Option(None, help="Also write a contact sheet PNG here."),
    ) -> None:
        import time

        from edgevision.errors import DataError
        from edgevision.fileio import check_output_file

        scenes = task is not Task.classification  # counted in --images, not --per-class
        wrong, right = ("--per-class", "--images N") if scenes else ("--images", "--per-class N")
        if (per_class if scenes else images) is not None:
            raise DataError(f"{wrong} does not apply to --task {task.value}", f"use {right}")
        if preview:
            check_output_file(preview, "--preview")
        start = time.perf_counter()
        count = images if scenes else per_class
        path, summary = _SYNTH[task](out, count, seed, size or _DEFAULT_SIZE[task.value], classes)
        took = time.perf_counter() - start
        Console().print(f"{summary} ({took:.1f} s)")
        if preview:
            from edgevision.data import synth, synth_detect, synth_segment

            sheet = {
                Task.classification: synth.contact_sheet,
                Task.detection: synth_detect.detection_contact_sheet,
                Task.segmentation: synth_segment.segmentation_contact_sheet,
            }[task]
            Console().print(f"preview: {sheet(path, preview)}")

    @data.command("video", help=VIDEO_HELP)
    def video_cmd(
        out: Path = typer.Argument(..., help="Output clip, ending in .mp4."),
        seconds: float = typer.Option(20.0, help="Clip length in seconds."),
        fps: float = typer.Option(15.0, help="Frames per second."),
        size: str = typer.Option("320x240", help="Frame size WIDTHxHEIGHT."),
        seed: int = typer.Option(0, help="Random seed."),
        task: Task = typer.Option(
            Task.classification, help="segmentation: also a mask per frame (see above)."
        ),
    ) -> None:
        from collections import Counter

        from edgevision.data.video import read_truth, write_video

        if task is Task.segmentation:
            from edgevision.data.synth_segment import write_segmentation_clip

            path = write_segmentation_clip(out, seconds=seconds, fps=fps, size=size, seed=seed)
            masks = path.with_name(f"{path.stem}.masks")
            Console().print(
                f"{sum(1 for _ in masks.iterdir())} frames → {path}; masks {masks}, ground "
                f"truth {path.with_suffix('.json')}"
            )
            return

        path = write_video(out, seconds=seconds, fps=fps, size=size, seed=seed)
        truth = read_truth(path)
        labels = Counter(f["label"] for f in truth["frames"])
        signs = sum(n for name, n in labels.items() if name != "background")
        Console().print(
            f"{len(truth['frames'])} frames → {path}; ground truth {path.with_suffix('.json')} "
            f"({signs} frames with a classifiable sign, {len(labels) - 1} sign classes)"
        )
