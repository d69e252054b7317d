"""Drawing detections on a BGR frame: what the video sink shows and the report's example grid.

Torch-free (NumPy and OpenCV only), for the runtime. Every function returns a drawn copy and
leaves its input alone; boxes may be floats and may reach outside the image (they are clipped,
and those wholly outside are skipped), so one odd box never stops a live video.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgevision.errors import ConfigError
from edgevision.opencv import cv2

Color = tuple[int, int, int]
TRUTH_COLOR: Color = (0, 200, 0)  # BGR green
_GOLDEN = 0.618033988749895  # hue step: consecutive colours land far apart on the hue circle
# Hues (0..1) the palette uses: all but the greens (0.2..0.5), kept for ground truth.
_HUE_START, _HUE_SPAN = 0.5, 0.7


def palette(n: int) -> list[Color]:
    """``n`` distinct, deterministic BGR colours; label ``k`` gets entry k.

    Saturated and bright, and never green: green is `TRUTH_COLOR`, the ground truth's.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"palette size {n!r} is not a non-negative integer", "pass len(labels)")
    return [_color(k) for k in range(n)]


def _color(k: int) -> Color:
    value = 0.95 if k % 2 == 0 else 0.75  # alternate brightness too, for many classes
    hue = (_HUE_START + _HUE_SPAN * ((k * _GOLDEN) % 1.0)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return (round(255 * b), round(255 * g), round(255 * r))


def _canvas(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(
            f"an image of shape {img.shape} cannot be drawn on", "pass an (H, W, 3) BGR image"
        )
    return img.copy()


def _box_array(boxes: Any, labels: Any) -> tuple[np.ndarray, list[int]]:
    """Boxes as float (N, 4) and labels as ints, or `ConfigError` when they do not pair up."""
    boxes = np.asarray(boxes, dtype=np.float64)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ConfigError(
            f"boxes have shape {boxes.shape}; expected (N, 4)", "pass [x0, y0, x1, y1] rows"
        )
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    _check_lengths(len(boxes), labels=labels)
    return boxes, labels


def _pixel_boxes(boxes: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer boxes clipped to the image, and which rows are visible (finite, overlapping)."""
    height, width = shape[:2]
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    clipped = np.stack(
        [
            np.clip(safe[:, 0], 0, width - 1),
            np.clip(safe[:, 1], 0, height - 1),
            np.clip(safe[:, 2], 0, width - 1),
            np.clip(safe[:, 3], 0, height - 1),
        ],
        axis=1,
    )
    inside = (safe[:, 2] >= 0) & (safe[:, 3] >= 0) & (safe[:, 0] < width) & (safe[:, 1] < height)
    visible = finite & inside & (safe[:, 2] >= safe[:, 0]) & (safe[:, 3] >= safe[:, 1])
    return np.round(clipped).astype(np.int64), visible


def _check_lengths(count: int, **columns: Any) -> None:
    for name, column in columns.items():
        if column is not None and len(column) != count:
            raise ConfigError(
                f"{len(column)} {name} for {count} boxes", f"pass one entry of {name} per box"
            )


def _name(names: Sequence[str], label: int) -> str:
    # An index outside the label list is shown as its number rather than stopping the video.
    return names[label] if 0 <= label < len(names) else str(label)


def _text_ink(color: Color) -> Color:
    luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _font_scale(shape: tuple[int, ...]) -> float:
    return float(np.clip(min(shape[:2]) / 900, 0.35, 1.0))


def _tag(img: np.ndarray, text: str, x: int, y: int, color: Color, below: bool) -> None:
    """A filled tag with ``text`` above (or below) the corner (x, y), kept inside the image."""
    scale = _font_scale(img.shape)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    height, width = img.shape[:2]
    pad = 2
    top = y + 1 if below else y - h - base - 2 * pad
    if top < 0:
        top = y + 1  # no room above the box: put the tag inside it
    top = min(top, max(0, height - h - base - 2 * pad))
    x = min(max(0, x), max(0, width - w - 2 * pad))
    bottom = top + h + base + 2 * pad
    cv2.rectangle(img, (x, top), (x + w + 2 * pad, bottom), color, thickness=cv2.FILLED)
    origin = (x + pad, top + pad + h)
    cv2.putText(
        img, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, _text_ink(color), 1, cv2.LINE_AA
    )


def _draw(
    img: np.ndarray,
    boxes: np.ndarray,
    texts: Sequence[str],
    colors: Sequence[Color],
    thickness: int,
    below: bool,
) -> np.ndarray:
    out = _canvas(img)
    pixels, visible = _pixel_boxes(boxes, out.shape)
    for i in np.flatnonzero(visible):
        x0, y0, x1, y1 = (int(v) for v in pixels[i])
        cv2.rectangle(out, (x0, y0), (x1, y1), colors[i], thickness)
    for i in np.flatnonzero(visible):  # tags after all boxes, so no box line crosses a tag
        x0, y0, _, y1 = (int(v) for v in pixels[i])
        if texts[i]:
            _tag(out, texts[i], x0, y1 if below else y0, colors[i], below)
    return out


def draw_detections(
    img: np.ndarray,
    boxes: Any,
    labels: Any,
    names: Sequence[str],
    scores: Any = None,
    track_ids: Any = None,
    color: Color | None = None,
    thickness: int = 2,
) -> np.ndarray:
    """A copy of BGR ``img`` with each box and a tag "label 0.93" (or "#7 label 0.93" tracked).

    ``boxes`` (N, 4) ``[x0, y0, x1, y1]`` pixels, ``labels`` (N,) indices into ``names``;
    ``scores`` and ``track_ids`` (N,) are optional (a track id of None or < 0 is not shown).
    Each label has its `palette` colour unless ``color`` is given.
    """
    boxes, labels = _box_array(boxes, labels)
    _check_lengths(len(boxes), scores=scores, track_ids=track_ids)
    texts = []
    for i, label in enumerate(labels):
        parts = [_name(names, label)]
        if scores is not None:
            parts.append(f"{float(scores[i]):.2f}")
        if track_ids is not None and track_ids[i] is not None and int(track_ids[i]) >= 0:
            parts.insert(0, f"#{int(track_ids[i])}")
        texts.append(" ".join(parts))
    box_colors = [color or (_color(label) if label >= 0 else (255, 255, 255)) for label in labels]
    return _draw(img, boxes, texts, box_colors, thickness, below=False)


def draw_truth(img: np.ndarray, boxes: Any, labels: Any, names: Sequence[str]) -> np.ndarray:
    """A copy of BGR ``img`` with thin green ground-truth boxes, each named below its bottom edge.

    Drawn under `draw_detections` (first truth, then predictions) for prediction-vs-truth views;
    the names sit below the boxes so they do not cover the predictions' tags above them.
    """
    boxes, labels = _box_array(boxes, labels)
    texts = [_name(names, label) for label in labels]
    return _draw(img, boxes, texts, [TRUTH_COLOR] * len(labels), 1, below=True)


__all__ = ["TRUTH_COLOR", "draw_detections", "draw_truth", "palette"]
