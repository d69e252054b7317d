"""The Source interface: open, read, close — and what each outcome of a read means.

After jetson-utils' ``videoSource``: a read that times out is an expected result (``None``), a
device that broke is an error (`SourceLostError`, which the capture loop answers by reopening
the source with backoff), a frame that arrived damaged is skipped (`CorruptFrame`), and a file
that ended says so (`EndOfSource`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from edgevision.errors import SourceError


class EndOfSource(Exception):  # noqa: N818 - a signal, like StopIteration, not a failure
    """A finite source (a file, a folder) has no more frames."""


class CorruptFrame(Exception):  # noqa: N818 - a signal: skip this frame, count it, go on
    """One frame arrived but cannot be used (undecodable, empty); the stream itself is fine."""


class SourceLostError(SourceError):
    """The device or stream broke mid-run (unplugged, stream ended, stalled).

    Raised by ``Source.read``; the capture loop closes and reopens the source with backoff and
    raises it for good only when every attempt failed (then ``summary`` holds the run so far).
    """

    summary: Any = None


def parse_bool(text: str) -> bool:
    """'1/true/yes/on' → True, '0/false/no/off' → False (query-string options)."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a yes/no value")


def parse_size(text: str | tuple[int, int]) -> tuple[int, int]:
    """'320x240' (width x height) → (320, 240)."""
    if isinstance(text, tuple | list):
        w, h = (int(v) for v in text)
    else:
        w, _, h = str(text).lower().partition("x")
        w, h = int(w), int(h)
    if w <= 0 or h <= 0:
        raise ValueError(f"{text!r} is not a positive WIDTHxHEIGHT")
    return w, h


def positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A converter that also rejects values <= 0."""

    def convert(text: Any) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(f"{text!r} must be > 0")
        return value

    return convert


class Source(ABC):
    """A stream of HxWx3 uint8 BGR frames named by a URI.

    Subclasses set ``scheme``, ``OPTIONS`` (option name → converter from the query-string text)
    and ``live``: a live source delivers frames at the sensor's pace, so the pipeline keeps only
    the newest one; a source that is not live (a file) is read as fast as the pipeline consumes.
    """

    scheme: ClassVar[str] = ""
    live: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self, uri: str, **options: Any) -> None:
        self.uri = uri
        self.options = self._convert_options(options)
        self.is_open = False

    # -- subclasses implement these -------------------------------------------------------
    @abstractmethod
    def open_impl(self) -> None: ...

    @abstractmethod
    def read_impl(self) -> np.ndarray | None: ...

    @abstractmethod
    def close_impl(self) -> None: ...

    @property
    def fps(self) -> float | None:
        """Native frame rate when the source knows it (a file's, a camera's setting)."""
        return None

    def frame_meta(self) -> dict[str, Any]:
        """Metadata of the frame last read (e.g. the synthetic clip's ground truth); {} if none."""
        return {}

    # -- the public interface -------------------------------------------------------------
    def open(self) -> Source:
        """Open (or reopen) the source; raise `SourceError` saying what is missing."""
        if self.is_open:
            self.close()
        self.open_impl()
        self.is_open = True
        return self

    def read(self) -> np.ndarray | None:
        """The next frame, or None when none came within the source's timeout.

        Raises `EndOfSource` at the end of a file, `CorruptFrame` for one bad frame and
        `SourceLostError` when the device or stream broke.
        """
        if not self.is_open:
            raise SourceError(f"source {self.uri} is not open", "call open() first")
        return self.read_impl()

    def close(self) -> None:
        """Release the device or file; the source can be opened again."""
        if self.is_open:
            self.is_open = False
            self.close_impl()

    def describe(self) -> str:
        """A short human description (for logs and the summary)."""
        return self.uri

    def _convert_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in options.items():
            if name not in self.OPTIONS:
                raise SourceError(
                    f"source {self.uri}: unknown option {name!r}",
                    f"options of {self.scheme or type(self).__name__} sources: "
                    f"{', '.join(sorted(self.OPTIONS)) or '(none)'}",
                )
            try:
                out[name] = self.OPTIONS[name](value)
            except (TypeError, ValueError) as exc:
                raise SourceError(
                    f"source {self.uri}: option {name}={value!r} is invalid ({exc})"
                ) from None
        return out

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
