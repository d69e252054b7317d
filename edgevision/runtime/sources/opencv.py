"""Sources read through OpenCV's VideoCapture: files, V4L2 cameras, CSI cameras, RTSP, GStreamer.

Each checks first that this OpenCV build has what it needs (FFmpeg, V4L2, GStreamer — see
``cv2.getBuildInformation()``) so that a missing piece is named, not guessed at.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgevision.errors import SourceError
from edgevision.opencv import cv2, gstreamer_missing_error, parse_build_information
from edgevision.runtime.sources.base import (
    EndOfSource,
    Source,
    SourceLostError,
    parse_bool,
    positive,
)
from edgevision.runtime.sources.uri import split_query


@functools.cache
def opencv_video_io() -> dict[str, bool]:
    """Which video I/O backends this OpenCV was built with, from ``getBuildInformation()``.

    Keys are lower-case names as OpenCV prints them ("ffmpeg", "gstreamer", "v4l/v4l2", ...).
    """
    return parse_build_information(cv2.getBuildInformation())["video_io"]


def require_video_io(feature: str, uri: str, fix: str) -> None:
    """Raise `SourceError` when this OpenCV lacks the video I/O backend ``feature``."""
    if feature.lower() == "gstreamer":
        require_gstreamer(uri)
    elif not opencv_video_io().get(feature.lower(), False):
        raise SourceError(
            f"cannot open {uri}: this OpenCV ({cv2.__version__}) was built without "
            f"{feature} (cv2.getBuildInformation() says {feature}: NO)",
            fix,
        )


def require_gstreamer(uri: str) -> None:
    """Raise `SourceError` when this OpenCV lacks GStreamer, naming a PyPI wheel that shadows
    the system OpenCV (JetPack's has GStreamer) and how to switch."""
    if not opencv_video_io().get("gstreamer", False):
        raise gstreamer_missing_error(uri)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV logs its own "can't open camera" warnings; our SourceError says it better.
    logging = getattr(cv2.utils, "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _checked_frame(ok: bool, frame: np.ndarray | None) -> np.ndarray | None:
    return frame if ok and frame is not None and frame.size else None


class CvSource(Source):
    """Common VideoCapture handling; subclasses say what to open and what a failed read means."""

    live: ClassVar[bool] = True

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self._cap: cv2.VideoCapture | None = None

    def capture_args(self) -> tuple[Any, int, list[int]]:
        """(target, apiPreference, params) for ``cv2.VideoCapture``."""
        raise NotImplementedError

    def unopened_error(self) -> SourceError:
        return SourceError(f"OpenCV cannot open {self.uri}", "check the URI and the device")

    def open_impl(self) -> None:
        target, api, params = self.capture_args()
        with _quiet_opencv():
            cap = cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise self.unopened_error()
        self._cap = cap
        self.configure(cap)

    def configure(self, cap: cv2.VideoCapture) -> None:
        """Apply options after opening (resolution, frame rate)."""

    def read_impl(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        frame = _checked_frame(ok, frame)
        if frame is None:
            self.on_failed_read()
        return frame

    def on_failed_read(self) -> None:
        """A live device that returns nothing has gone away (OpenCV's own timeouts passed)."""
        raise SourceLostError(f"{self.uri}: the device or stream returned no frame")

    def close_impl(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float | None:
        if self._cap is None:
            return None
        value = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return value if 0.0 < value < 1000.0 else None


class VideoFileSource(CvSource):
    """A video file OpenCV can decode (mp4, avi, mkv, ...); read as fast as the pipeline goes.

    ``clip.mp4?loop=1`` starts again from the first frame at the end (soak tests, demos).
    """

    scheme = "file"
    live = False
    OPTIONS: ClassVar = {"loop": parse_bool}

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self.path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
        self.loops = 0

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> VideoFileSource:
        base, query = split_query(uri)
        if not query or Path(uri.removeprefix("file://")).is_file():
            return cls(uri, **options)  # a file name that holds a '?' is taken as it is
        return cls(base, **{**query, **options})

    def capture_args(self) -> tuple[Any, int, list[int]]:
        if not self.path.is_file():
            raise SourceError(
                f"video file {self.path} does not exist",
                "check the path; a camera is v4l2:///dev/video0 or csi://0, a folder of "
                "images is a directory or a glob",
            )
        api = cv2.CAP_FFMPEG if opencv_video_io().get("ffmpeg") else cv2.CAP_ANY
        return str(self.path), api, []

    def unopened_error(self) -> SourceError:
        return SourceError(
            f"OpenCV cannot decode video file {self.path} (not a video, truncated, or a codec "
            "this OpenCV lacks)",
            "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 out.mp4`",
        )

    def read_impl(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        frame = _checked_frame(ok, frame)
        if frame is None and self.options.get("loop"):
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = _checked_frame(*self._cap.read())
            self.loops += frame is not None
        if frame is None:
            self.on_failed_read()
        return frame

    def on_failed_read(self) -> None:
        raise EndOfSource(str(self.path))

    def describe(self) -> str:
        return str(self.path) + (" (looped)" if self.options.get("loop") else "")


_VIDEO_NODE = re.compile(r"^/dev/video(\d+)$")


def v4l2_index(target: str) -> int:
    """'0', '/dev/video0' or a symlink to it (/dev/v4l/by-id/...) → 0; SourceError if absent."""
    if target.isdigit():
        return int(target)
    path = os.path.realpath(target)
    match = _VIDEO_NODE.match(path)
    if not os.path.exists(target):
        raise SourceError(
            f"no such video device {target}",
            "list the cameras with `ls /dev/video*` (or `v4l2-ctl --list-devices`); check "
            "that the camera is plugged in and the index is right",
        )
    if match is None:
        raise SourceError(
            f"{target} is not a V4L2 video node (/dev/videoN)", "use v4l2:///dev/videoN"
        )
    return int(match.group(1))


class V4l2Source(CvSource):
    """A USB/V4L2 camera: ``v4l2:///dev/video0``, ``/dev/video0`` or a bare index ``0``.

    Options: width, height, fps, fourcc (e.g. MJPG).
    """

    scheme = "v4l2"
    OPTIONS: ClassVar = {
        "width": positive(int),
        "height": positive(int),
        "fps": positive(float),
        "fourcc": str,
    }

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> V4l2Source:
        base, query = split_query(uri)
        return cls(base, **{**query, **options})

    @property
    def target(self) -> str:
        rest = self.uri[len("v4l2://") :] if self.uri.startswith("v4l2://") else self.uri
        return rest or "0"

    def capture_args(self) -> tuple[Any, int, list[int]]:
        index = v4l2_index(self.target)
        if sys.platform.startswith("linux"):
            require_video_io(
                "v4l/v4l2", self.uri, "install an OpenCV built with V4L2 (opencv-python has it)"
            )
            if not os.path.exists(f"/dev/video{index}"):
                raise SourceError(
                    f"no such video device /dev/video{index}",
                    "list the cameras with `ls /dev/video*`; check the camera is plugged in",
                )
            return index, cv2.CAP_V4L2, []
        return index, cv2.CAP_ANY, []

    def unopened_error(self) -> SourceError:
        return SourceError(
            f"camera {self.uri} exists but cannot be opened (busy, no permission, or not a "
            "capture device)",
            "close other programs using it; add yourself to the 'video' group",
        )

    def configure(self, cap: cv2.VideoCapture) -> None:
        fourcc = self.options.get("fourcc")
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc[:4].ljust(4)))
        for name, prop in (
            ("width", cv2.CAP_PROP_FRAME_WIDTH),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT),
            ("fps", cv2.CAP_PROP_FPS),
        ):
            if name in self.options:
                cap.set(prop, self.options[name])
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short: newest frames


def csi_pipeline(
    sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30, flip: int = 0
) -> str:
    """The Jetson nvarguscamerasrc GStreamer pipeline for a CSI camera, ending in appsink."""
    rate = f"{round(fps)}/1"
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){rate}, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip} ! "
        f"video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class CsiSource(CvSource):
    """A Jetson CSI camera, ``csi://0?width=1280&height=720&fps=30&flip=0`` (needs GStreamer)."""

    scheme = "csi"
    OPTIONS: ClassVar = {
        "width": positive(int),
        "height": positive(int),
        "fps": positive(float),
        "flip": int,
    }

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> CsiSource:
        base, query = split_query(uri)
        return cls(base, **{**query, **options})

    @property
    def sensor_id(self) -> int:
        rest = self.uri[len("csi://") :] or "0"
        if not rest.isdigit():
            raise SourceError(f"{self.uri}: the sensor id must be a number", "use csi://0")
        return int(rest)

    def pipeline(self) -> str:
        o = self.options
        flip = o.get("flip", 0)
        if not 0 <= flip <= 7:
            raise SourceError(f"{self.uri}: flip={flip} is out of range", "use 0..7 (nvvidconv)")
        return csi_pipeline(
            self.sensor_id, o.get("width", 1280), o.get("height", 720), o.get("fps", 30), flip
        )

    def capture_args(self) -> tuple[Any, int, list[int]]:
        pipeline = self.pipeline()
        require_gstreamer(self.uri)
        return pipeline, cv2.CAP_GSTREAMER, []

    def unopened_error(self) -> SourceError:
        return SourceError(
            f"the CSI camera {self.uri} cannot be opened (no camera on that port, or "
            "nvargus-daemon is not running)",
            "check the ribbon cable; `sudo systemctl restart nvargus-daemon`; try "
            "`gst-launch-1.0 nvarguscamerasrc ! fakesink`",
        )

    @property
    def fps(self) -> float | None:
        return float(self.options.get("fps", 30))


class StreamSource(CvSource):
    """A network stream read by FFmpeg: ``rtsp://…``, ``rtsps://…``, ``http(s)://…``.

    Options (keyword arguments; the URI's own query belongs to the camera): timeout (seconds
    to open or to wait for a frame; default 5), transport (tcp or udp, RTSP only).
    """

    scheme = "rtsp"
    OPTIONS: ClassVar = {"timeout": positive(float), "transport": str}

    def capture_args(self) -> tuple[Any, int, list[int]]:
        require_video_io("FFMPEG", self.uri, "install opencv-python(-headless), built with FFmpeg")
        transport = self.options.get("transport")
        if transport is not None:
            if transport not in ("tcp", "udp"):
                raise SourceError(f"{self.uri}: transport={transport!r}", "use tcp or udp")
            # FFmpeg reads its capture options from this variable at open time.
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{transport}"
        ms = int(self.options.get("timeout", 5.0) * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        return self.uri, cv2.CAP_FFMPEG, params

    def unopened_error(self) -> SourceError:
        return SourceError(
            f"the stream {self.uri} cannot be opened (unreachable, wrong path or credentials, "
            "or it did not answer within the timeout)",
            "check it with `ffprobe URI`; for RTSP behind a firewall try transport=tcp",
        )


class GstSource(CvSource):
    """A raw GStreamer pipeline ending in appsink: ``gst:videotestsrc ! videoconvert ! appsink``."""

    scheme = "gst"

    @property
    def pipeline(self) -> str:
        return self.uri[len("gst:") :].strip()

    def capture_args(self) -> tuple[Any, int, list[int]]:
        last = self.pipeline.rsplit("!", 1)[-1].strip()
        if not last.startswith("appsink"):
            raise SourceError(
                f"the GStreamer pipeline {self.pipeline!r} does not end in appsink",
                "end it with '! videoconvert ! video/x-raw,format=BGR ! appsink'",
            )
        require_gstreamer(self.uri)
        return self.pipeline, cv2.CAP_GSTREAMER, []

    def unopened_error(self) -> SourceError:
        return SourceError(
            f"GStreamer cannot start the pipeline {self.pipeline!r}",
            "test it with `gst-launch-1.0` (replace appsink by fakesink)",
        )


__all__ = [
    "CsiSource",
    "GstSource",
    "StreamSource",
    "V4l2Source",
    "VideoFileSource",
    "csi_pipeline",
    "opencv_video_io",
    "require_gstreamer",
    "require_video_io",
    "v4l2_index",
]
