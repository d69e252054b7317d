"""Progress reporting for the build steps, without tying the library to a terminal.

Each long step takes a ``track`` callable and iterates through it; the CLI passes one that draws
rich progress bars, library callers get `silent` by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Tracker(Protocol):
    """Wraps an iterable, reporting progress as it is consumed."""

    def __call__(self, items: Iterable[T], total: int | None, description: str) -> Iterator[T]: ...


def silent(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """A tracker that reports nothing."""
    yield from items
