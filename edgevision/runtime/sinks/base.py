"""The Sink interface: open once, write each result, close (flush) once — whatever happened."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from edgevision.runtime.frame import Result


def _no_stop() -> None:
    return None


@dataclass(frozen=True)
class StreamInfo:
    """What a sink may want to know before the first result."""

    source: str
    fps: float | None
    labels: tuple[str, ...]
    backend: str
    # A sink may end the run (a window's "q" key) by calling this.
    request_stop: Callable[[], None] = field(default=_no_stop, compare=False)
    task: str = "classification"  # the bundle's: a detector's results carry objects, events


class Sink(ABC):
    """Where results go. The pipeline calls ``open`` before the first frame, ``write`` from its
    sink thread for every result, and ``close`` exactly once at the end, also after an error or
    a signal, so that files are flushed and complete."""

    name: ClassVar[str] = ""

    def open(self, info: StreamInfo) -> None:
        """Prepare the output; raise `SinkError` if it cannot be used."""
        self.info = info

    @abstractmethod
    def write(self, result: Result) -> None: ...

    def write_events(self, events: list[dict]) -> None:  # noqa: B027 - most ignore them
        """Track events that belong to no frame: the ``left`` of every live track when the
        stream ends (called once, before `close`)."""

    def close(self) -> None:  # noqa: B027 - most sinks have nothing to release
        """Flush and release the output."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
