"""``synthetic://``: the dash-cam generator as a live camera (frames at its own frame rate)."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np

from edgevision.errors import DataError, SourceError
from edgevision.runtime.sources.base import EndOfSource, Source, parse_size, positive
from edgevision.runtime.sources.uri import split_query


class SyntheticSource(Source):
    """``synthetic://?fps=15&seed=0&size=320x240[&frames=N]``: a live-rate synthetic dash-cam.

    Like a camera, it delivers a frame every 1/fps seconds whether or not anyone keeps up;
    ``frames`` ends the stream after N frames (default: endless). Each frame's ground truth is
    its ``frame_meta()``.
    """

    scheme = "synthetic"
    live = True
    OPTIONS: ClassVar = {
        "fps": positive(float),
        "seed": int,
        "size": parse_size,
        "frames": positive(int),
    }

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> SyntheticSource:
        base, query = split_query(uri)
        if base.rstrip("/") not in ("synthetic:", "synthetic://dashcam"):
            raise SourceError(
                f"unknown synthetic source {base!r}",
                "use synthetic:// with options, e.g. synthetic://?fps=15&seed=0&size=320x240",
            )
        return cls(uri, **{**query, **options})

    def __init__(self, uri: str = "synthetic://", **options: Any) -> None:
        super().__init__(uri, **options)
        self._cam = None
        self._index = 0
        self._due = 0.0
        self._truth: dict[str, Any] = {}
        # Set by close() so a read sleeping until the next frame wakes up at once.
        self._closed = threading.Event()

    def open_impl(self) -> None:
        from edgevision.data.video import DashCam

        o = self.options
        try:
            self._cam = DashCam(
                seed=o.get("seed", 0), size=o.get("size", (320, 240)), fps=o.get("fps", 15.0)
            )
        except DataError as exc:
            raise SourceError(f"source {self.uri}: {exc.message}", exc.fix) from None
        self._closed.clear()
        self._index = 0
        self._due = time.perf_counter()

    def read_impl(self) -> np.ndarray | None:
        limit = self.options.get("frames")
        if limit is not None and self._index >= limit:
            raise EndOfSource(self.uri)
        delay = self._due - time.perf_counter()
        if delay > 0 and self._closed.wait(delay):
            return None
        frame, self._truth = self._cam.frame(self._index)
        self._index += 1
        # A camera's clock does not wait for a slow reader: the next frame is due 1/fps after
        # this one was, and a late reader gets the current frame, not a backlog.
        self._due = max(self._due + 1.0 / self._cam.fps, time.perf_counter() - 1.0 / self._cam.fps)
        return frame

    def close_impl(self) -> None:
        self._closed.set()
        self._cam = None

    @property
    def fps(self) -> float | None:
        return float(self.options.get("fps", 15.0))

    def frame_meta(self) -> dict[str, Any]:
        return {"truth": self._truth} if self._truth else {}
