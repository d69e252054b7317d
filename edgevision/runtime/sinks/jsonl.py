"""JSON Lines events: one line per result, flushed as it is written (tail -f friendly)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from edgevision.errors import SinkError
from edgevision.runtime.frame import Result
from edgevision.runtime.sinks.base import Sink, StreamInfo


class JsonlSink(Sink):
    """Write each result as a JSON object on its own line to ``path``.

    ``mode`` ``frames``: one line per frame — frame, capture_ts (perf_counter s), time (epoch
    s), label, score, known, topk [[label, p], ...], latency_ms, age_ms, timings_ms, meta when
    the source gives some, and for a detector ``objects`` (box, label, score, track) and the
    frame's track ``events``. ``tracks``: one line per track event only (``appeared`` /
    ``left``: track id, label by vote, first/last capture time, frames, best score and the box
    at it). ``auto`` (default): ``tracks`` for a detection bundle, ``frames`` otherwise.
    Every line is flushed when written, so a killed run leaves only whole lines behind; close
    also fsyncs.
    """

    name = "jsonl"
    MODES = ("auto", "frames", "tracks")

    def __init__(self, path: str | os.PathLike[str], mode: str = "auto") -> None:
        if mode not in self.MODES:
            raise SinkError(f"events mode {mode!r} is unknown", f"use {', '.join(self.MODES)}")
        self.path = Path(path)
        self.mode = mode
        self._file: IO[str] | None = None

    def open(self, info: StreamInfo) -> None:
        super().open(info)
        if self.mode == "auto":
            self.mode = "tracks" if info.task == "detection" else "frames"
        elif self.mode == "tracks" and info.task != "detection":
            raise SinkError(
                f"--events-mode tracks needs a detection bundle; this one is {info.task}",
                "use --events-mode frames",
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise SinkError(
                f"cannot write events to {self.path}: {exc.strerror}",
                "choose a writable path for --events",
            ) from None

    def write(self, result: Result) -> None:
        if self.mode == "tracks":
            self.write_events(result.events)
            return
        self._file.write(json.dumps(result.to_event(), separators=(",", ":")) + "\n")

    def write_events(self, events: list[dict]) -> None:
        for event in events:
            self._file.write(json.dumps(event, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"
