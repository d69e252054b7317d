"""An annotated video file (cv2.VideoWriter, 'mp4v'), renamed into place when complete."""

from __future__ import annotations

import os
from pathlib import Path

from edgevision.errors import SinkError
from edgevision.fileio import check_output_file
from edgevision.opencv import cv2
from edgevision.runtime.frame import Result
from edgevision.runtime.sinks.base import Sink, StreamInfo
from edgevision.runtime.sinks.draw import RateMeter, annotate

DEFAULT_FPS = 15.0


class VideoSink(Sink):
    """Write every result's frame, annotated, to ``path``.

    The file is written beside ``path`` under a temporary name and renamed on close, so the
    path holds either a complete, playable video or nothing. Its frame rate is the source's
    (or ``fps``); frames of another size than the first are resized to it.
    """

    name = "video"

    def __init__(
        self, path: str | os.PathLike[str], fps: float | None = None, fourcc: str = "mp4v"
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.fourcc = fourcc
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._meter = RateMeter()
        self.frames_written = 0

    def open(self, info: StreamInfo) -> None:
        super().open(info)
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            raise SinkError(
                f"video path {self.path} has no video extension", "use e.g. --video out.mp4"
            )
        check_output_file(self.path, "--video")
        self.fps = self.fps or info.fps or DEFAULT_FPS

    def _start(self, width: int, height: int) -> None:
        writer = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height)
        )
        if not writer.isOpened():
            raise SinkError(
                f"OpenCV cannot write a '{self.fourcc}' video to {self.path}",
                "check the folder is writable; use an OpenCV with FFmpeg (the PyPI wheels)",
            )
        self._writer, self._size = writer, (width, height)

    def write(self, result: Result) -> None:
        if result.image is None:
            return
        image = result.image
        if self._writer is None:
            self._start(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(annotate(image, result, self._meter.tick()))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the MP4 index: the file is playable from here on
            self._writer = None
            os.replace(self._tmp, self.path)

    def __repr__(self) -> str:
        return f"VideoSink({str(self.path)!r})"
