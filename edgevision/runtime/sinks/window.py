"""An on-screen window (cv2.imshow) where a display and a GUI-enabled OpenCV exist."""

from __future__ import annotations

import os
import sys

from edgevision.errors import SinkError
from edgevision.opencv import cv2
from edgevision.runtime.frame import Result
from edgevision.runtime.sinks.base import Sink, StreamInfo
from edgevision.runtime.sinks.draw import RateMeter, annotate

_QUIT_KEYS = (ord("q"), 27)  # q, Esc


def opencv_gui() -> str:
    """The GUI backend this OpenCV was built with ('NONE' for opencv-python-headless)."""
    for line in cv2.getBuildInformation().splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "GUI":
            return value.strip() or "NONE"
    return "NONE"


def check_display() -> None:
    """Raise `SinkError` saying why a window cannot be shown here (no GUI build, no display)."""
    gui = opencv_gui()
    if gui.upper() == "NONE":
        raise SinkError(
            f"cannot show a window: this OpenCV ({cv2.__version__}) has no GUI support "
            "(cv2.getBuildInformation() says GUI: NONE; opencv-python-headless is built so)",
            "write the annotated video with --video out.mp4 instead, or install opencv-python "
            "(not -headless) on a machine with a display",
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise SinkError(
            "cannot show a window: no display (DISPLAY and WAYLAND_DISPLAY are unset)",
            "run on the device's desktop, or use --video out.mp4",
        )


class WindowSink(Sink):
    """Show each annotated frame; pressing q or Esc in the window ends the run."""

    name = "window"

    def __init__(self, title: str = "edgevision") -> None:
        self.title = title
        self._meter = RateMeter()
        self._shown = False

    def open(self, info: StreamInfo) -> None:
        super().open(info)
        check_display()

    def write(self, result: Result) -> None:
        if result.image is None:
            return
        cv2.imshow(self.title, annotate(result.image, result, self._meter.tick()))
        self._shown = True
        if cv2.waitKey(1) & 0xFF in _QUIT_KEYS:
            self.info.request_stop()

    def close(self) -> None:
        if self._shown:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
