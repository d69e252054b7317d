"""A least-recently-used cache bounded by bytes, not entries (torch-free).

A vehicle runs for hours: `functools.lru_cache(maxsize=N)` bounds the count of entries, so a
cache of arrays whose sizes vary grows until N of the largest are held. This one evicts the least
recently used results once the arrays it holds pass ``max_bytes``.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def nbytes(value: Any) -> int:
    """Bytes held by ``value``: arrays count their buffers, tuples and lists their items."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple | list):
        return sum(nbytes(v) for v in value)
    return sys.getsizeof(value)


class ByteLRU:
    """A thread-safe mapping that evicts the least recently used entries past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """``(True, value)`` when cached (and now most recent), else ``(False, None)``."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            self._items.move_to_end(key)
            return True, item[0]

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value``; a value larger than the whole budget is not kept."""
        size = nbytes(value)
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self.bytes = 0


def byte_lru_cache(max_bytes: int) -> Callable[[F], F]:
    """Memoise a function of hashable arguments in a `ByteLRU` of ``max_bytes``.

    The wrapper's ``cache`` attribute is the `ByteLRU` (its ``bytes`` and ``len`` for tests).
    Cached arrays are returned as they are: callers must not modify them.
    """

    def decorate(fn: F) -> F:
        cache = ByteLRU(max_bytes)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = (args, tuple(sorted(kwargs.items())))
            hit, value = cache.get(key)
            if not hit:
                value = fn(*args, **kwargs)
                cache.put(key, value)
            return value

        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
