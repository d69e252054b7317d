"""Pipeline mode: the runtime end to end on a source, as the vehicle runs it.

The profiler does not build its own pipeline: it runs the runtime's `Pipeline` and reads its
`RunSummary` — capture-to-result latency and frame age per frame, per-stage times, frame
counts — so what is profiled is exactly what is deployed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from edgevision.bundle import Bundle
from edgevision.errors import EdgeVisionError
from edgevision.profile.machine import describe_machine
from edgevision.profile.models import bundle_info
from edgevision.profile.report import Measurement, PipelineProfile

if TYPE_CHECKING:
    from edgevision.runtime import RunSummary, Sink, Source

LATENCY = "capture_to_result"
AGE = "frame_age"


def _check(max_frames: int, warmup: int) -> None:
    if max_frames < 1:
        raise EdgeVisionError(
            f"frames must be at least 1, got {max_frames}", "use e.g. --frames 300"
        )
    if warmup < 0:
        raise EdgeVisionError(f"warmup must be >= 0, got {warmup}", "use e.g. --warmup 10")


def _run(pipeline: Any, total: int, progress: Callable[[int, int | None], None] | None) -> None:
    # Iterating (rather than run()) lets the progress bar follow each result as it comes.
    for done, _ in enumerate(pipeline, start=1):
        if progress:
            progress(done, total)


def _measurements(summary: RunSummary, warmup: int) -> list[Measurement]:
    """Pipeline latency, frame age and every stage, without the first ``warmup`` frames."""
    runner = summary.backend  # e.g. "ort:int8-cpu"
    backend, _, artifact = runner.partition(":")
    common = {"backend": backend or None, "artifact": artifact or None, "note": f"runner {runner}"}
    out = [
        Measurement(key=LATENCY, kind="pipeline", samples_ms=summary.latency_ms[warmup:], **common),
        Measurement(key=AGE, kind="pipeline", samples_ms=summary.age_ms[warmup:], **common),
    ]
    out += [
        Measurement(key=stage, kind="stage", samples_ms=values[warmup:])
        for stage, values in summary.stage_ms.items()
        if values[warmup:]
    ]
    return out


def _counts(summary: RunSummary, warmup: int) -> dict[str, Any]:
    return {
        "read": summary.frames_read,
        "processed": summary.frames_processed,
        "measured": max(0, summary.frames_processed - warmup),
        "dropped": summary.frames_dropped,
        "corrupt": summary.frames_corrupt,
        "reconnects": summary.reconnects,
        "fps": round(summary.fps, 2),
    }


def profile_pipeline(
    bundle: Bundle | str | os.PathLike[str],
    source: Source | str | os.PathLike[str],
    backend: str = "auto",
    threads: int = 0,
    max_frames: int = 300,
    warmup: int = 10,
    realtime: bool = False,
    artifact: str | None = None,
    sinks: Sequence[Sink] = (),
    progress: Callable[[int, int | None], None] | None = None,
) -> PipelineProfile:
    """Run the runtime's pipeline on ``source`` and profile it end to end.

    ``warmup`` + ``max_frames`` frames are processed; the first ``warmup`` (session start,
    caches) are left out of the statistics but not of the frame counts. A live source
    (a camera, ``synthetic://``) runs at its own pace and drops frames the pipeline cannot
    keep up with; a file is read as fast as it is consumed unless ``realtime``.
    """
    from edgevision.runtime import Pipeline

    _check(max_frames, warmup)
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    total = max_frames + warmup
    pipeline = Pipeline(
        bundle,
        source,
        sinks=sinks,
        backend=backend,
        threads=threads,
        realtime=realtime,
        max_frames=total,
        artifact=artifact,
    )
    _run(pipeline, total, progress)
    summary = pipeline.summary
    if summary is None or summary.frames_processed <= warmup:
        got = 0 if summary is None else summary.frames_processed
        raise EdgeVisionError(
            f"source {source} gave {got} processed frame(s), not more than the {warmup} "
            "warm-up frame(s)",
            "use a longer source, or fewer warm-up frames (--warmup)",
        )
    return PipelineProfile(
        mode="pipeline",
        bundle=bundle_info(bundle),
        machine=describe_machine(),
        settings={
            "source": str(summary.source),
            "backend": backend,
            "runner": summary.backend,
            "threads": threads,
            "frames": max_frames,
            "warmup": warmup,
            "realtime": realtime,
            "rounds": max(0, summary.frames_processed - warmup),
            "stop_reason": summary.stop_reason,
            "wall_s": summary.wall_s,
        },
        measurements=_measurements(summary, warmup),
        deployed=LATENCY,
        counts=_counts(summary, warmup),
    )
