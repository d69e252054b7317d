"""Drawing a result onto its frame: label, score, FPS and latency in a readable box."""

from __future__ import annotations

import collections
import time

import numpy as np

from edgevision.opencv import cv2
from edgevision.runtime.frame import Result

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _AMBER, _WHITE, _BLACK = (60, 200, 60), (0, 170, 255), (255, 255, 255), (0, 0, 0)


class RateMeter:
    """Results per second over the last ``window`` results (what the overlay calls FPS)."""

    def __init__(self, window: int = 30) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> float:
        self._times.append(time.perf_counter() if now is None else now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


# BGR colours for boxes, one per label index (cycled)
PALETTE = (
    (60, 200, 60),
    (0, 170, 255),
    (255, 120, 40),
    (200, 60, 200),
    (40, 220, 220),
    (80, 80, 255),
    (255, 200, 0),
    (160, 255, 120),
    (120, 120, 255),
    (255, 80, 160),
)


def annotate(image: np.ndarray, result: Result, fps: float) -> np.ndarray:
    """A copy of ``image`` with the label, score, FPS and latency drawn in the top-left; a
    detector's boxes with their label, score and track id; a segmenter's class map as a
    coloured overlay with the largest classes' areas."""
    out = image.copy()
    h = out.shape[0]
    scale = max(0.35, h / 480 * 0.6)
    thick = max(1, round(scale * 2))
    if result.mask is not None:  # a segmenter: the class map, coloured, under the text
        from edgevision.tasks.segment.draw import overlay
        from edgevision.tasks.segment.postprocess import palette

        out = overlay(out, result.mask, palette(len(result.segmentation["areas"])))
        head = (areas_text(result.segmentation), _WHITE)
    elif result.objects is not None:
        _draw_objects(out, result.objects, scale * 0.8, max(1, thick - 1))
        tracked = {o["track"] for o in result.objects if o["track"] is not None}
        head = (f"{len(result.objects)} objects, {len(tracked)} tracked", _WHITE)
    else:
        head = (f"{result.label} {result.score:.2f}", _GREEN if result.known else _AMBER)
    lines = [head, (f"{fps:.1f} FPS  {result.latency_ms:.1f} ms", _WHITE)]
    y = 4
    for text, colour in lines:
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
        cv2.rectangle(out, (2, y), (8 + tw, y + th + base + 4), _BLACK, -1)
        cv2.putText(out, text, (5, y + th + 2), _FONT, scale, colour, thick, cv2.LINE_AA)
        y += th + base + 6
    return out


def areas_text(segmentation: dict) -> str:
    """The largest classes but the first (background) with their share of the frame, and the
    free distance ahead when the bundle names a drivable class."""
    areas = list(segmentation["areas"].items())[1:]
    top = sorted(areas, key=lambda kv: -kv[1])[:3]
    text = "  ".join(f"{name} {100 * share:.0f}%" for name, share in top)
    if segmentation.get("free_distance") is not None:
        text += f"  free {100 * segmentation['free_distance']:.0f}%"
    return text


def _draw_objects(out: np.ndarray, objects: list[dict], scale: float, thick: int) -> None:
    labels: dict[str, int] = {}
    for obj in objects:
        x0, y0, x1, y1 = (int(round(v)) for v in obj["box"])
        colour = PALETTE[labels.setdefault(obj["label"], len(labels)) % len(PALETTE)]
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick, cv2.LINE_AA)
        track = "" if obj["track"] is None else f" #{obj['track']}"
        text = f"{obj['label']} {obj['score']:.2f}{track}"
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        top = max(0, y0 - th - base - 2)
        cv2.rectangle(out, (x0, top), (x0 + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(out, text, (x0 + 2, top + th + 1), _FONT, scale, _BLACK, 1, cv2.LINE_AA)
