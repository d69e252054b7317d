"""The capture stage: read a source in its own thread, survive faults, never queue up latency.

A live source (or a file with ``realtime``) feeds a `Newest` channel, so a slow consumer gets
the newest frame and older ones are dropped and counted. A file feeds a bounded `Channel` and
is read as fast as the pipeline consumes it. A device that breaks or a stream that stalls is
closed and reopened with exponential backoff; the gap is logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from edgevision.errors import ConfigError, SourceError
from edgevision.runtime.channels import Channel, Closed
from edgevision.runtime.frame import Frame
from edgevision.runtime.sources.base import CorruptFrame, EndOfSource, Source, SourceLostError

log = logging.getLogger("edgevision.runtime")


@dataclass(frozen=True)
class Reconnect:
    """How a lost or stalled source is reopened: waits of ``initial_s`` × ``factor``^k, capped at
    ``max_delay_s``, at most ``attempts`` tries per outage (0: give up at once). ``stall_s``
    without a frame counts as a stalled stream."""

    attempts: int = 10
    initial_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 8.0
    stall_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.initial_s < 0 or self.factor < 1 or self.stall_s <= 0:
            raise ConfigError(
                f"reconnect policy {self} is out of range",
                "attempts >= 0, initial_s >= 0, factor >= 1, stall_s > 0",
            )

    def delays(self) -> Iterator[float]:
        """The wait before each attempt."""
        delay = self.initial_s
        for _ in range(self.attempts):
            yield min(delay, self.max_delay_s)
            delay *= self.factor


def valid_frame(image: object) -> bool:
    """An image the pipeline can use: a non-empty uint8 HxW, HxWx1/3/4 array."""
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.size > 0
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)))
    )


@dataclass
class CaptureStats:
    """Counters the capture thread alone writes (read after it has finished)."""

    read: int = 0
    corrupt: int = 0
    timeouts: int = 0
    reconnects: int = 0
    gaps_s: list[float] = field(default_factory=list)
    first_ts: float | None = None


class Capture:
    """Read ``source`` into ``out`` until the source ends, ``stop`` is set or ``limit`` frames
    were read. ``pace_fps`` (a file in realtime mode) spaces reads at that rate. ``prepare``
    (for a lossless source) runs on each frame in this thread before it is handed on; when it
    returns None the frame is not passed on. A source that stays lost after every reconnect
    attempt ends the capture with ``error`` set."""

    def __init__(
        self,
        source: Source,
        out: Channel,
        stop: threading.Event,
        reconnect: Reconnect,
        limit: int | None = None,
        pace_fps: float | None = None,
        prepare: Callable[[Frame], Frame | None] | None = None,
    ) -> None:
        self.source, self.out, self.stop = source, out, stop
        self.prepare = prepare
        self.policy, self.limit, self.pace_fps = reconnect, limit, pace_fps
        self.stats = CaptureStats()
        self.error: BaseException | None = None
        self.end_reason = ""
        self._segment = 0
        self._last_frame = time.perf_counter()

    def run(self) -> None:
        """The thread body; always closes ``out`` so the next stage sees the end."""
        try:
            self.end_reason = self._loop()
        except SourceError as exc:
            self.error, self.end_reason = exc, "source lost"
        except Closed:
            self.end_reason = "stopped"
        except BaseException as exc:  # a bug: keep it for the pipeline to re-raise
            self.error, self.end_reason = exc, f"error: {type(exc).__name__}"
        finally:
            self.out.close()

    def _loop(self) -> str:
        start = time.perf_counter()
        while not self.stop.is_set():
            if self.limit is not None and self.stats.read >= self.limit:
                return "max frames"
            if self.pace_fps and self.stop.wait(max(0.0, self._due(start) - time.perf_counter())):
                break
            try:
                self._read_one()
            except EndOfSource:
                return "end of source"
        return "stopped"

    def _due(self, start: float) -> float:
        return start + self.stats.read / self.pace_fps

    def _read_one(self) -> None:
        t0 = time.perf_counter()
        try:
            image = self.source.read()
        except CorruptFrame as exc:
            self._count_corrupt(str(exc))
            return
        except SourceLostError as exc:
            self._reconnect(exc.message)
            return
        ts = time.perf_counter()
        if image is None:
            self.stats.timeouts += 1
            if ts - self._last_frame > self.policy.stall_s:
                self._reconnect(f"no frame for {ts - self._last_frame:.1f} s (stalled)")
            return
        if not valid_frame(image):
            self._count_corrupt(f"unusable frame {getattr(image, 'shape', type(image))}")
            return
        self._emit(image, t0, ts)

    def _emit(self, image: np.ndarray, t0: float, ts: float) -> None:
        frame = Frame(
            index=self.stats.read,
            image=image,
            capture_ts=ts,
            capture_time=time.time(),
            meta=self.source.frame_meta(),
            segment=self._segment,
        )
        frame.timings["capture"] = (ts - t0) * 1000.0
        self.stats.read += 1
        if self.stats.first_ts is None:
            self.stats.first_ts = ts
        self._last_frame = ts
        if self.prepare is not None and self.prepare(frame) is None:
            return
        self.out.put(frame)

    def _count_corrupt(self, why: str) -> None:
        self.stats.read += 1
        self.stats.corrupt += 1
        log.warning("frame %d of %s skipped: %s", self.stats.read - 1, self.source.uri, why)

    def _reconnect(self, reason: str) -> None:
        lost_at = self._last_frame
        log.warning("source %s lost (%s); reopening", self.source.uri, reason)
        self.source.close()
        last_error = reason
        for attempt, delay in enumerate(self.policy.delays(), start=1):
            if self.stop.wait(delay):
                return
            try:
                self.source.open()
            except SourceError as exc:
                last_error = exc.message
                log.warning("reopen %d/%d failed: %s", attempt, self.policy.attempts, last_error)
                continue
            self._reconnected(lost_at)
            return
        raise SourceLostError(
            f"source {self.source.uri} was lost ({reason}) and {self.policy.attempts} attempts "
            f"to reopen it failed (last: {last_error})",
            "check the camera or stream; raise the reconnect attempts to wait longer",
        )

    def _reconnected(self, lost_at: float) -> None:
        now = time.perf_counter()
        gap = now - lost_at
        self.stats.reconnects += 1
        self.stats.gaps_s.append(gap)
        self._segment += 1
        self._last_frame = now
        log.warning("source %s reopened; gap %.2f s", self.source.uri, gap)
