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

    Fields: frame, capture_ts (perf_counter s), time (epoch s), label, score, known, topk
    [[label, p], ...], latency_ms, age_ms, timings_ms, and meta when the source gives some.
    Every line is flushed when written, so a killed run leaves only whole lines behind; close
    also fsyncs.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def open(self, info: StreamInfo) -> None:
        super().open(info)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise SinkError(
                f"cannot write events to {self.path}: {exc.strerror}",
                "choose a writable path for --events",
            ) from None

    def write(self, result: Result) -> None:
        self._file.write(json.dumps(result.to_event(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"
