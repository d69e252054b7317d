"""A synthetic dash-cam: a road scene with signs that appear at the roadside and grow as the car
approaches, one after another with gaps, plus per-frame ground truth.

`DashCam` renders frames on demand (random access, or an endless stream for the runtime's
``synthetic://`` source); `write_video` writes a clip as MP4 ('mp4v') with ``<clip>.json`` beside
it. numpy + OpenCV only: this runs in the vehicle runtime, so no torch and no scikit-learn.

Ground truth per frame: ``label`` is the sign's class once the sign is at least `MIN_SIGN_SCALE`
of the frame height (the smallest sign in the dataset's sign images) and at least `MIN_VISIBLE`
of it is inside the frame, else ``"background"``. ``box`` ([x, y, w, h], clipped to the frame) is
given whenever a sign is in view, even a small one labelled background, and ``sign`` names it.

``objects`` lists every sign in view, whatever its size, for detection: ``[{"id", "label",
"box"}]``, empty when none. ``id`` is the sign's event number, the same over its whole approach
and different for every sign; ``box`` is ``[x0, y0, x1, y1]`` floats, the exact visible extent of
the drawn shape in pixel-edge coordinates, as in the detection dataset (`sign_box`).
"""

from __future__ import annotations

import bisect
import math
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.render import (
    BACKGROUND,
    MIN_SIGN_SCALE,
    MIN_VISIBLE,
    SIGN_CLASSES,
    SceneStyle,
    draw_pole,
    draw_road,
    draw_sign,
    ground_y,
    parse_size,
    progress_bar,
    sign_quad,
    visible_box,
)
from edgevision.data.synth_detect import sign_box
from edgevision.errors import DataError
from edgevision.fileio import atomic_write_json, check_output_file, read_json
from edgevision.opencv import cv2

LABELS: list[str] = [*SIGN_CLASSES, BACKGROUND]
FOURCC = "mp4v"
_SPEED_MS = 12.0  # the car's speed, metres per second: drives the lane dashes and roadside
_START_SCALE = 0.03  # a sign first appears this fraction of the frame height
_APPROACH_S = (1.8, 2.4)  # seconds from a sign's appearance until it has passed
_GAP_S = (0.3, 0.8)  # seconds with no sign between two signs
_EXIT_FROM = 0.82  # fraction of an approach after which the sign slides out of view


@dataclass(frozen=True)
class _Event:
    """One sign's approach: which sign, when, and where on screen it travels."""

    index: int  # the event number: the sign's identity in the ground truth's ``objects``
    name: str
    start: int
    length: int
    side: float
    ax: float
    ay: float
    end_scale: float
    knee: float
    yaw: float
    rotation: float
    gain: float

    def quad(self, i: int, h: int, vp: tuple[float, float], w: int) -> tuple[np.ndarray, float]:
        """The sign's corners in frame ``i`` and its size as a fraction of the frame height."""
        t = (i - self.start) / max(self.length - 1, 1)
        # Log-linear growth in two legs that meet at the classifiable size at ``knee``: the car
        # slows down as it nears the sign, so the sign stays large for a while before it passes.
        if t <= self.knee:
            scale = _START_SCALE * (MIN_SIGN_SCALE / _START_SCALE) ** (t / self.knee)
        else:
            scale = MIN_SIGN_SCALE * (self.end_scale / MIN_SIGN_SCALE) ** (
                (t - self.knee) / (1 - self.knee)
            )
        size = scale * h
        push = max(0.0, (t - _EXIT_FROM) / (1 - _EXIT_FROM)) ** 2 * 0.7 * w
        center = (vp[0] + self.side * (self.ax * size + push), vp[1] - self.ay * size)
        return sign_quad(center, size, self.rotation, self.yaw), scale


class DashCam:
    """A deterministic synthetic dash-cam: ``frame(i)`` is the same for the same seed and size.

    ``size`` is ``(width, height)`` (or ``"320x240"``), ``fps`` frames per second. Signs cycle
    through every class in a seeded order, so a 20 s clip shows most of them.
    """

    def __init__(
        self, seed: int = 0, size: tuple[int, int] | str = (320, 240), fps: float = 15.0
    ) -> None:
        self.size = parse_size(size)
        try:  # URI options arrive as strings ("synthetic://?fps=15")
            fps = float(fps)
        except (TypeError, ValueError):
            raise DataError(
                f"fps {fps!r} is not a number", "use 1..120 frames per second"
            ) from None
        if not 1 <= fps <= 120:
            raise DataError(f"fps {fps:g} is out of range", "use 1..120 frames per second")
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise DataError(f"seed {seed!r} is not a whole number", "use e.g. seed=0") from None
        self.fps = fps
        self.style = SceneStyle.sample(self._rng("style"))
        self._events: list[_Event] = []
        self._starts: list[int] = []

    def _rng(self, *key: int | str) -> np.random.Generator:
        # crc32, not hash(): Python salts str hashes per process.
        parts = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key]
        return np.random.default_rng([self.seed, *parts])

    # ------------------------------------------------------------------ the sign schedule

    def _order(self, block: int) -> list[str]:
        return [SIGN_CLASSES[j] for j in self._rng("order", block).permutation(len(SIGN_CLASSES))]

    def _next_event(self) -> _Event:
        k = len(self._events)
        rng = self._rng("event", k)
        if self._events:
            prev = self._events[-1]
            start = prev.start + prev.length + round(rng.uniform(*_GAP_S) * self.fps)
        else:
            start = round(0.6 * self.fps)
        side = 1.0 if rng.uniform() < 0.75 else -1.0
        return _Event(
            index=k,
            name=self._order(k // len(SIGN_CLASSES))[k % len(SIGN_CLASSES)],
            start=start,
            length=max(4, round(rng.uniform(*_APPROACH_S) * self.fps)),
            side=side,
            ax=rng.uniform(0.35, 1.0),
            ay=rng.uniform(0.0, 0.3),
            end_scale=rng.uniform(0.6, 0.85),
            knee=rng.uniform(0.45, 0.6),
            yaw=side * rng.uniform(0.1, 0.5),
            rotation=rng.uniform(-4, 4),
            gain=rng.uniform(0.8, 1.1),
        )

    def _event_at(self, i: int) -> _Event | None:
        while not self._events or self._events[-1].start <= i:
            event = self._next_event()
            self._events.append(event)
            self._starts.append(event.start)
        k = bisect.bisect_right(self._starts, i) - 1
        if k < 0:
            return None
        event = self._events[k]
        return event if i < event.start + event.length else None

    # ------------------------------------------------------------------ frames

    def _vp(self, i: int) -> tuple[float, float]:
        w, h = self.size
        # A slow sway and a small bounce, so the camera does not look bolted to the world.
        return (
            w * (0.5 + 0.03 * math.sin(i / self.fps * 0.7)),
            h * (0.45 + 0.008 * math.sin(i / self.fps * 9.0)),
        )

    def _check_index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or i < 0:
            raise DataError(f"frame index {i!r} must be a whole number >= 0")
        return int(i)

    def truth(self, i: int) -> dict[str, Any]:
        """Ground truth of frame ``i`` (keys as in the module docstring), without rendering."""
        return self._render(self._check_index(i), draw=False)[1]

    def frame(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame ``i`` as HxWx3 uint8 BGR and its ground truth."""
        frame, truth = self._render(self._check_index(i), draw=True)
        assert frame is not None  # draw=True always renders
        return frame, truth

    def frames(self, n: int | None = None) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Frames 0, 1, ... with their ground truth: ``n`` of them, or forever when None."""
        i = 0
        while n is None or i < n:
            yield self.frame(i)
            i += 1

    def _render(self, i: int, draw: bool) -> tuple[np.ndarray | None, dict[str, Any]]:
        w, h = self.size
        vp = self._vp(i)
        img = draw_road(self.style, w, h, i / self.fps * _SPEED_MS, vp) if draw else None
        truth: dict[str, Any] = {
            "index": i,
            "label": BACKGROUND,
            "box": None,
            "sign": None,
            "objects": [],
        }
        event = self._event_at(i)
        if event is not None:
            quad, scale = event.quad(i, h, vp, w)
            visible, box = visible_box(quad, w, h)
            if box is not None:
                truth.update(box=box, sign=event.name)
                if scale >= MIN_SIGN_SCALE and visible >= MIN_VISIBLE:
                    truth["label"] = event.name
                extent = sign_box(event.name, quad, w, h)[1]
                if extent is not None:  # None: only the quad's empty corner is in view
                    truth["objects"].append({"id": event.index, "label": event.name, "box": extent})
            if img is not None and box is not None:
                draw_pole(img, quad, ground_y(vp, scale * h))
                draw_sign(img, event.name, quad, gain=event.gain)
        if img is not None:
            img = self._camera(img, i)
        return img, truth

    def _camera(self, img: np.ndarray, i: int) -> np.ndarray:
        # Lighting drifts slowly (clouds); the noise is new every frame, as on a real sensor.
        t = i / self.fps
        gain = 1.0 + 0.12 * math.sin(t * 0.9) + 0.05 * math.sin(t * 2.3 + 1.0)
        out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6) * gain
        out += self._rng("noise", i).normal(0, 3.0, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
    if not writer.isOpened():
        raise DataError(
            f"OpenCV cannot write an '{FOURCC}' MP4 to {path}",
            "install opencv-python-headless with FFmpeg support (the PyPI wheels)",
        )
    return writer


def count_frames(path: str | os.PathLike[str]) -> int:
    """Decode ``path`` with OpenCV and count its frames (0 when it does not open)."""
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while cap.isOpened() and cap.grab():
            n += 1
        return n
    finally:
        cap.release()


@contextmanager
def _writing_clip(
    out: Path, fps: float, size: tuple[int, int], n: int
) -> Iterator[cv2.VideoWriter]:
    """A video writer onto a temp file beside ``out``. On success the clip is decoded back to
    check that it holds ``n`` frames, then renamed to ``out``; the temp file never stays."""
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.mp4")
    try:
        writer = _open_writer(tmp, fps, size)
        try:
            yield writer
        finally:
            writer.release()
        got = count_frames(tmp)
        if got != n:
            raise DataError(
                f"the written clip decodes to {got} frames, expected {n}",
                "check OpenCV's FFmpeg support (cv2.getBuildInformation())",
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_video(
    out: str | os.PathLike[str],
    seconds: float = 20.0,
    fps: float = 15.0,
    size: tuple[int, int] | str = (320, 240),
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic dash-cam clip to ``out`` (.mp4) and its ground truth to ``out``.json.

    The clip is written to a temp file, decoded back to check its frame count, then renamed into
    place. The JSON holds ``fps``, ``size`` [w, h] and ``frames`` [{index, label, box, sign,
    objects}].
    """
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise DataError(f"video path {out} must end in .mp4", f"use {out.with_suffix('.mp4')}")
    if not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise DataError(f"clip length {seconds!r} s is out of range", "use 0 < seconds <= 3600")
    cam = DashCam(seed=seed, size=size, fps=fps)
    n = max(1, round(seconds * cam.fps))
    check_output_file(out, "video path")
    truths = []
    with (
        _writing_clip(out, cam.fps, cam.size, n) as writer,
        progress_bar(n, "dash-cam clip", progress) as advance,
    ):
        for frame, truth in cam.frames(n):
            writer.write(frame)
            truths.append(truth)
            advance()
    meta = {
        "fps": cam.fps,
        "size": list(cam.size),
        "seed": cam.seed,
        "fourcc": FOURCC,
        "labels": LABELS,
        "min_sign_scale": MIN_SIGN_SCALE,
        "frames": truths,
    }
    atomic_write_json(out.with_suffix(".json"), meta)
    return out


def read_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load the ground-truth JSON of a clip (give the .mp4 or the .json path)."""
    path = Path(path).with_suffix(".json")
    fix = "generate the clip with `edgevision data video`"
    data = read_json(path, "ground truth", DataError, fix)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise DataError(f"ground truth {path} is malformed: it has no 'frames' list", fix)
    return data
