"""What travels through the pipeline: a `Frame` (in flight) and a `Result` (what comes out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class Frame:
    """One captured frame on its way through the stages.

    ``capture_ts`` is ``time.perf_counter()`` when the source delivered the frame, so every
    later stage measures latency from it; ``capture_time`` is the wall clock (``time.time()``)
    for logs. ``segment`` counts reconnects: temporal smoothing restarts when it changes.
    """

    index: int
    image: np.ndarray
    capture_ts: float
    capture_time: float
    meta: dict[str, Any] = field(default_factory=dict)
    segment: int = 0
    tensor: np.ndarray | None = None
    outputs: dict[str, np.ndarray] | None = None
    age_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class Result:
    """The pipeline's answer for one frame.

    ``label`` is ``"unknown"`` (and ``known`` False) when the smoothed top score is below the
    threshold; ``topk`` always lists the best labels with their (smoothed) probabilities.
    ``latency_ms`` is capture → result (postprocess done); ``age_ms`` is how old the frame was
    when preprocessing picked it up; ``timings`` holds each stage's milliseconds for this
    frame (``sink`` is filled in once the sinks have written it). ``image`` is the captured
    BGR frame (for drawing); ``meta`` is what the source attached (e.g. ground truth).

    A detection bundle's result also carries ``objects`` (every detection on the original
    frame: ``box`` [x0, y0, x1, y1] pixels, ``label``, ``score``, ``track`` id or None) and
    ``events`` (tracks that ``appeared`` or ``left`` on this frame, `track_event` dicts);
    ``label``/``score`` are then the highest-scoring detection's (``"none"``, 0 without any).

    A segmentation bundle's result carries ``mask`` (the class id of every original-frame
    pixel, uint8, 255 where the model saw nothing) and ``segmentation`` (``areas``: each
    class's fraction of the frame, ``free_distance``: the drivable class's reach up the centre
    line, a fraction of the frame height, when the spec names one); ``label``/``score`` are
    the largest non-background class and its area fraction.
    """

    frame_index: int
    capture_ts: float
    capture_time: float
    label: str
    score: float
    topk: list[tuple[str, float]]
    latency_ms: float
    age_ms: float
    known: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)
    objects: list[dict[str, Any]] | None = None  # a detector's, per frame
    events: list[dict[str, Any]] = field(default_factory=list)  # track events of this frame
    mask: np.ndarray | None = field(default=None, repr=False)  # a segmenter's, frame pixels
    segmentation: dict[str, Any] | None = None  # a segmenter's areas and free distance

    def to_event(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSON Lines event)."""
        event = {
            "frame": self.frame_index,
            "capture_ts": round(self.capture_ts, 6),
            "time": round(self.capture_time, 6),
            "label": self.label,
            "score": round(self.score, 6),
            "known": self.known,
            "topk": [[name, round(p, 6)] for name, p in self.topk],
            "latency_ms": round(self.latency_ms, 3),
            "age_ms": round(self.age_ms, 3),
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.objects is not None:
            event["objects"] = self.objects
        if self.events:
            event["events"] = self.events
        if self.segmentation is not None:
            event["segmentation"] = self.segmentation
        if self.meta:
            event["meta"] = self.meta
        return event
