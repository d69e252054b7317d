"""Sources by URI: a registry keyed by scheme, ``open_source(uri)`` dispatches on it.

=====================================  ===================================================
URI                                    source
=====================================  ===================================================
``clip.mp4``, ``file://clip.mp4``      a video file OpenCV can decode (not live)
``v4l2:///dev/video0``, ``/dev/video0``, ``0``   a V4L2 (USB) camera
``csi://0?width=1280&height=720``      a Jetson CSI camera (nvarguscamerasrc; GStreamer)
``rtsp://host/stream``                 an RTSP (or http) stream through FFmpeg
``gst:videotestsrc ! … ! appsink``     a raw GStreamer pipeline
``frames/``, ``'frames/*.jpg'``        a folder of images or a glob (not live)
``synthetic://?fps=15&seed=0``         the synthetic dash-cam, at its frame rate
=====================================  ===================================================

A team adds its own source with ``SOURCES.register("myscheme", MySource)`` (a `Source`
subclass; an optional ``from_uri(uri, **options)`` classmethod parses the URI).
"""

from __future__ import annotations

import os
from typing import Any

from edgevision.registry import Registry
from edgevision.runtime.sources.base import (
    CorruptFrame,
    EndOfSource,
    Source,
    SourceLostError,
)
from edgevision.runtime.sources.uri import scheme_of, split_query

SOURCES: Registry[type[Source]] = Registry("source scheme")
_OPENCV = "edgevision.runtime.sources.opencv"
for _scheme, _cls in (
    ("file", f"{_OPENCV}:VideoFileSource"),
    ("v4l2", f"{_OPENCV}:V4l2Source"),
    ("csi", f"{_OPENCV}:CsiSource"),
    ("rtsp", f"{_OPENCV}:StreamSource"),
    ("rtsps", f"{_OPENCV}:StreamSource"),
    ("http", f"{_OPENCV}:StreamSource"),
    ("https", f"{_OPENCV}:StreamSource"),
    ("gst", f"{_OPENCV}:GstSource"),
    ("images", "edgevision.runtime.sources.images:ImageFolderSource"),
    ("synthetic", "edgevision.runtime.sources.synthetic:SyntheticSource"),
):
    SOURCES.register(_scheme, _cls)


def make_source(uri: str | os.PathLike[str], **options: Any) -> Source:
    """The (unopened) Source that ``uri`` names; ``options`` override the URI's query options."""
    uri = os.fspath(uri)
    cls = SOURCES.get(scheme_of(uri))
    from_uri = getattr(cls, "from_uri", None)
    return from_uri(uri, **options) if from_uri is not None else cls(uri, **options)


def open_source(uri: str | os.PathLike[str], **options: Any) -> Source:
    """Open the source that ``uri`` names; `SourceError` says what is missing if it cannot."""
    return make_source(uri, **options).open()


__all__ = [
    "SOURCES",
    "CorruptFrame",
    "EndOfSource",
    "Source",
    "SourceLostError",
    "make_source",
    "open_source",
    "scheme_of",
    "split_query",
]
