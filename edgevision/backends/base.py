"""One Runner interface for every backend (after Polygraphy's ``BaseRunner``).

The base class owns state checks, input validation and timing; ONNX Runtime, TensorRT and the
PyTorch reference override the ``*_impl`` methods only. The pipeline and the profiler never know
which backend they hold.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.errors import BackendError

if TYPE_CHECKING:
    from edgevision.bundle import Bundle


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one model input; ``None`` or a str in ``shape`` is dynamic."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    def check(self, array: np.ndarray) -> None:
        """Raise `BackendError` when ``array`` does not fit this input."""
        if array.dtype != self.dtype:
            raise BackendError(
                f"input {self.name!r} must be {self.dtype}, got {array.dtype}",
                "feed the output of edgevision.preprocess.preprocess()",
            )
        if array.ndim != len(self.shape) or any(
            isinstance(d, int) and d != s for d, s in zip(self.shape, array.shape, strict=False)
        ):
            raise BackendError(
                f"input {self.name!r} must have shape {list(self.shape)}, got {list(array.shape)}",
                "check the ModelSpec input size and layout",
            )


class Runner(ABC):
    """Activate, infer, deactivate. Use as a context manager."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        self._last_inference_s: float | None = None

    # -- subclasses implement these -------------------------------------------------------
    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def input_metadata_impl(self) -> list[TensorMeta]: ...

    @abstractmethod
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def deactivate_impl(self) -> None: ...

    # -- construction from a bundle (each backend overrides) ------------------------------
    @classmethod
    def from_bundle(cls, bundle: Bundle, artifact: str | None = None, **options: Any) -> Runner:
        """A runner for one of ``bundle``'s artifacts (``None``: the backend's preferred one)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a bundle")

    @classmethod
    def is_available(cls) -> bool:
        """Whether this machine can run this backend (its libraries and devices are present)."""
        return True

    # -- the public interface -------------------------------------------------------------
    def activate(self) -> Runner:
        """Load the model and allocate what inference needs."""
        if self.is_active:
            raise BackendError(f"runner {self.name} is already active")
        self.activate_impl()
        self.is_active = True
        return self

    def deactivate(self) -> None:
        """Free the model; the runner can be activated again."""
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def input_metadata(self) -> list[TensorMeta]:
        """The model's inputs, in order."""
        self._require_active()
        return self.input_metadata_impl()

    def infer(self, feed: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run one inference. A bare array feeds the first (usually only) input."""
        self._require_active()
        metas = self.input_metadata_impl()
        if isinstance(feed, np.ndarray):
            feed = {metas[0].name: feed}
        by_name = {m.name: m for m in metas}
        missing = set(by_name) - set(feed)
        extra = set(feed) - set(by_name)
        if missing or extra:
            raise BackendError(
                f"runner {self.name}: feed has inputs {sorted(feed)}, the model wants "
                f"{sorted(by_name)}"
            )
        for name, array in feed.items():
            by_name[name].check(array)
        start = time.perf_counter()
        out = self.infer_impl(dict(feed))
        self._last_inference_s = time.perf_counter() - start
        return out

    def last_inference_time(self) -> float | None:
        """Seconds the last `infer` spent inside the backend (validation excluded)."""
        return self._last_inference_s

    def _require_active(self) -> None:
        if not self.is_active:
            raise BackendError(
                f"runner {self.name} is not active", "call activate() or use it in a with block"
            )

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()
