"""Sinks by name (a registry); several run at once, each opened, written and closed in turn.

==========  ===============================================  ==================
name        what                                             CLI
==========  ===============================================  ==================
``jsonl``   JSON Lines events, one per frame                 ``--events F``
``video``   annotated video file (mp4v)                      ``--video F``
``window``  on-screen window (needs a GUI OpenCV + display)  ``--show``
``stdout``  a status line per second                         (unless --quiet)
``masks``   a segmenter's class maps as PNGs, every N frames    ``--masks DIR``
==========  ===============================================  ==================
"""

from __future__ import annotations

from typing import Any

from edgevision.registry import Registry
from edgevision.runtime.sinks.base import Sink, StreamInfo

SINKS: Registry[type[Sink]] = Registry("sink")
SINKS.register("jsonl", "edgevision.runtime.sinks.jsonl:JsonlSink")
SINKS.register("video", "edgevision.runtime.sinks.video:VideoSink")
SINKS.register("window", "edgevision.runtime.sinks.window:WindowSink")
SINKS.register("stdout", "edgevision.runtime.sinks.console:ConsoleSink")
SINKS.register("masks", "edgevision.runtime.sinks.masks:MaskSink")


def make_sink(name: str, *args: Any, **options: Any) -> Sink:
    """A sink by registry name, e.g. ``make_sink("jsonl", "out.jsonl")``."""
    return SINKS.get(name)(*args, **options)


__all__ = ["SINKS", "Sink", "StreamInfo", "make_sink"]
