"""A status line on stdout, at most once per interval: frame, label, FPS, latency."""

from __future__ import annotations

import sys
import time
from typing import IO

from edgevision.runtime.frame import Result
from edgevision.runtime.sinks.base import Sink
from edgevision.runtime.sinks.draw import RateMeter


class ConsoleSink(Sink):
    """Print one line every ``interval`` seconds (not per frame: a terminal is slow)."""

    name = "stdout"

    def __init__(self, interval: float = 1.0, stream: IO[str] | None = None) -> None:
        self.interval = interval
        self.stream = stream
        self._meter = RateMeter()
        self._next = 0.0

    def write(self, result: Result) -> None:
        fps = self._meter.tick()
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        stream = self.stream or sys.stdout
        if result.segmentation is not None:
            from edgevision.runtime.sinks.draw import areas_text

            stream.write(
                f"frame {result.frame_index:>6}  {areas_text(result.segmentation)}  "
                f"{fps:6.1f} FPS  latency {result.latency_ms:6.1f} ms\n"
            )
        elif result.objects is not None:
            from edgevision.runtime.detect import count_by_label

            counts = count_by_label(result.objects)
            what = ", ".join(f"{n} {label}" for label, n in counts.items()) or "no objects"
            stream.write(
                f"frame {result.frame_index:>6}  {what}  {fps:6.1f} FPS  latency "
                f"{result.latency_ms:6.1f} ms\n"
            )
        else:
            stream.write(
                f"frame {result.frame_index:>6}  {result.label:<16} {result.score:5.2f}  "
                f"{fps:6.1f} FPS  latency {result.latency_ms:6.1f} ms\n"
            )
        stream.flush()
