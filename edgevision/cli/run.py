"""`edgevision run`: a bundle on a live camera (or a file), results to events / video / screen."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Run BUNDLE on --source and write the results; Ctrl-C (or SIGTERM) stops cleanly.

Sources: clip.mp4 · v4l2:///dev/video0 (or /dev/video0, 0) · csi://0?width=1280&height=720 ·
rtsp://host/stream · 'gst:… ! appsink' · frames/ or 'frames/*.jpg' · synthetic://?fps=15&seed=0

A detection bundle reports boxes (NMS, mapped back onto the frame) and tracks them across
frames by capture time (ByteTrack-style); --events then writes track events (appeared / left:
label, best score and its box, first/last time) unless --events-mode frames (every detection
of every frame).

A segmentation bundle maps its class map back onto each frame (the inverse of the bundle's
resize): --video draws it as a coloured overlay, --events writes each class's share of the
frame (and the free distance ahead for the spec's drivable class), --masks DIR saves the
class map as an index PNG every --mask-every frames.
"""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("run", help=HELP)
    def run(
        bundle: Path = typer.Argument(..., help="Bundle folder written by `edgevision build`."),
        source: str = typer.Option(..., "--source", "-s", help="Source URI (see above)."),
        events: Path | None = typer.Option(None, help="Write JSON Lines events here."),
        video: Path | None = typer.Option(None, help="Write an annotated video here (.mp4)."),
        show: bool = typer.Option(False, "--show", help="Show an annotated window."),
        backend: str = typer.Option("auto", help="auto, ort or tensorrt."),
        precision: str | None = typer.Option(
            None, help="Force int8 or fp32 (default: the artifact the build deployed)."
        ),
        threads: int = typer.Option(0, min=0, help="CPU threads for ONNX Runtime (0: all)."),
        topk: int = typer.Option(3, min=1, help="Labels listed per frame."),
        threshold: float | None = typer.Option(
            None,
            min=0.0,
            max=1.0,
            help="Classifier: below it 'unknown' (default 0.5). Detector: the score a detection "
            "needs (default: the spec's). Segmenter: the frame share the largest non-background "
            "class needs for the frame to count as known (default: any pixel).",
        ),
        events_mode: str = typer.Option(
            "auto",
            help="--events per frame ('frames') or per track event ('tracks'; auto for "
            "a detector).",
        ),
        track: bool = typer.Option(True, "--track/--no-track", help="Detector: track objects."),
        nms: str = typer.Option(
            "agnostic",
            help="Detector: 'agnostic' keeps one box per object with its best label; "
            "'per-class' one per label above the threshold (how COCO mAP is measured).",
        ),
        track_max_age: float = typer.Option(
            1.0, min=0.0, help="Detector: seconds a track survives unseen before it 'left'."
        ),
        masks: Path | None = typer.Option(
            None, help="Segmenter: save class maps (index PNGs) in this new folder."
        ),
        mask_every: int = typer.Option(30, min=1, help="Segmenter: a --masks PNG every N frames."),
        smooth: int = typer.Option(5, min=1, help="Average probabilities over N frames."),
        realtime: bool = typer.Option(False, help="Read a file at its frame rate, like a camera."),
        max_frames: int | None = typer.Option(None, min=1, help="Stop after N results."),
        reconnect_attempts: int = typer.Option(10, min=0, help="Reopen a lost source N times."),
        pin: bool | None = typer.Option(
            None,
            "--pin/--no-pin",
            help="Inference on a CPU of its own, other stages on the rest (default: when "
            "--threads 1 and 2+ CPUs).",
            show_default=False,
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-second status line."),
    ) -> None:
        from rich.console import Console

        from edgevision.fileio import check_output_file
        from edgevision.runtime import Pipeline, Reconnect, SourceLostError, make_sink

        _setup_logging()
        for option, path in (("--events", events), ("--video", video)):
            if path is not None:
                check_output_file(path, option)  # before the model loads and the camera opens
        sinks = [make_sink("jsonl", events, mode=events_mode)] if events is not None else []
        sinks += [make_sink("video", video)] if video is not None else []
        sinks += [make_sink("masks", masks, every=mask_every)] if masks is not None else []
        sinks += [make_sink("window")] if show else []
        sinks += [] if quiet else [make_sink("stdout")]
        from edgevision.bundle import Bundle

        opened = Bundle.open(bundle)
        pipeline = Pipeline(
            opened,
            source,
            sinks=sinks,
            backend=backend,
            threads=threads,
            topk=topk,
            threshold=_threshold(opened, threshold),
            tracker=_tracker(track_max_age),
            tracking=track,
            nms=nms,
            smooth=smooth,
            realtime=realtime,
            max_frames=max_frames,
            reconnect=Reconnect(attempts=reconnect_attempts),
            pin_cpus=pin,
            **({"force_precision": precision} if precision else {}),
        )
        console = Console()
        try:
            summary = pipeline.run()
        except SourceLostError as exc:
            if exc.summary is not None:
                console.print(exc.summary.table())
            raise
        console.print(summary.table())


def _setup_logging() -> None:
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    # Warnings (reconnects, skipped frames) go to stderr, away from the status lines.
    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("edgevision")
    if not log.handlers:
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _threshold(bundle, threshold: float | None) -> float | None:
    """The classifier's default 0.5; a task head's default None (a detector's: its spec's)."""
    from edgevision.tasks import get_task

    if threshold is not None:
        return threshold
    return None if get_task(bundle.spec.task).runtime else 0.5


def _tracker(max_age: float):  # -> TrackerConfig
    from edgevision.tasks.detect.track import TrackerConfig

    return TrackerConfig(max_age_s=max_age)
