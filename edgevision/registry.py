"""Tables, not if/elif chains: named things (targets, methods, sources, sinks, backends)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgevision.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object table; an unknown name raises an error that lists the valid ones.

    Values may be registered as ``"module:attribute"`` strings, imported on first lookup, so
    that optional heavy dependencies (tensorrt, torch) stay unimported until asked for.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T | str] = {}

    def register(self, name: str, value: T | str | None = None) -> Callable[[T], T] | None:
        """Register ``value`` under ``name``; without a value, return a decorator."""
        if value is not None:
            self._items[name] = value
            return None

        def decorator(obj: T) -> T:
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Look ``name`` up, importing a lazily registered value on first use."""
        try:
            value = self._items[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}",
                f"use one of: {', '.join(sorted(self._items))}",
            ) from None
        if isinstance(value, str) and ":" in value:
            module, _, attr = value.partition(":")
            value = getattr(importlib.import_module(module), attr)
            self._items[name] = value
        return value  # type: ignore[return-value]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
