"""Hand-offs between pipeline threads: a bounded queue, and a one-slot "newest frame" box.

`Discard` ends a pipeline whose results nobody reads. All end the same way: ``close()`` lets
the consumer drain what is left and then raises `Closed` from ``get``; ``abort()`` wakes
everyone at once and drops what is left (a stage failed). Latency cannot build up behind a
`Newest` channel: a put over an unread item replaces it and counts a drop.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class Closed(Exception):  # noqa: N818 - a signal: the producer is done
    """The channel was closed (and drained) or aborted."""


class Channel:
    """A FIFO of at most ``capacity`` items; ``put`` waits while it is full."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = max(1, capacity)
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._aborted = False

    def put(self, item: Any) -> None:
        """Add ``item``, waiting for room; raise `Closed` if the channel was aborted."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._aborted:
                self._cond.wait()
            self._check_put()
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; None after ``timeout`` seconds; `Closed` once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(self._ready, timeout):
                return None
            if self._aborted or not self._items:
                raise Closed
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts; the consumer drains what is left, then gets `Closed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Wake every waiter now and drop the queued items."""
        with self._cond:
            self._aborted = self._closed = True
            self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)

    def _ready(self) -> bool:
        return bool(self._items) or self._closed

    def _check_put(self) -> None:
        if self._aborted or self._closed:
            raise Closed


class Newest(Channel):
    """One slot holding the newest item: a put never waits, it replaces an unread item.

    ``dropped`` counts the replaced items (frames that arrived faster than they were used).
    """

    def __init__(self) -> None:
        super().__init__(capacity=1)
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            self._check_put()
            if self._items:
                self._items.clear()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()


class Discard(Channel):
    """The end of a run nobody iterates: puts are dropped, ``get`` only reports the close."""

    def put(self, item: Any) -> None:
        with self._cond:
            self._check_put()
