"""The few places that touch the ``tensorrt`` module itself: import, version, logger.

``tensorrt`` is imported inside these functions only, so importing edgevision never needs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edgevision.errors import BackendError

_LOG = logging.getLogger("edgevision.tensorrt")
_LOGGERS: dict[int, Any] = {}  # id(tensorrt module) -> its one logger


def import_tensorrt() -> Any:
    """``import tensorrt``, or `BackendError` saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(
            f"TensorRT is not installed on this machine ({exc})",
            "on a Jetson it ships with JetPack; elsewhere `pip install 'edgevision[tensorrt]'` "
            "(CUDA 12 driver) or `pip install tensorrt-cu13` (CUDA 13), then build the engine "
            "with `edgevision engine BUNDLE` on the device",
        ) from None
    return tensorrt


# From this version on the engine is built strongly typed: TensorRT 10.12 deprecated the
# weak-typing precision flags (BuilderFlag.INT8/FP16, "superseded by strong typing") and 11.0
# removed them. 10.3 (JetPack 6) keeps the weakly typed build.
STRONG_TYPING_FROM = (10, 12)


def trt_version(trt: Any) -> tuple[int, int]:
    """(major, minor) of the installed TensorRT, e.g. ``(10, 3)``."""
    parts = str(trt.__version__).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise BackendError(f"cannot read the TensorRT version {trt.__version__!r}") from None


def trt_major(trt: Any) -> int:
    """The major version: 10 or 11 (11 has no weak typing at all)."""
    return trt_version(trt)[0]


def strongly_typed(trt: Any) -> bool:
    """Whether engines are built from a strongly typed network with this TensorRT."""
    return trt_version(trt) >= STRONG_TYPING_FROM


@dataclass
class CapturedLog:
    """TensorRT's errors and warnings of the current operation, to quote in our messages."""

    messages: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [m for m in self.messages if m.startswith(("ERROR", "INTERNAL_ERROR"))]


def trt_logger(trt: Any) -> Any:
    """One `tensorrt.ILogger` per process (TensorRT treats the logger as a singleton) that
    forwards to Python logging and keeps errors/warnings in ``.captured``."""
    key = id(trt)
    if key not in _LOGGERS:
        _LOGGERS[key] = _make_logger_class(trt)()
    return _LOGGERS[key]


def _make_logger_class(trt: Any) -> type:
    # A class that subclasses a TensorRT type is defined inside a factory (DESIGN.md §2), in
    # the form the ILogger documentation gives: call the base __init__, override log().
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: ("INTERNAL_ERROR", logging.ERROR),
        severity.ERROR: ("ERROR", logging.ERROR),
        severity.WARNING: ("WARNING", logging.WARNING),
        severity.INFO: ("INFO", logging.DEBUG),
        severity.VERBOSE: ("VERBOSE", logging.DEBUG),
    }

    class EdgeVisionTrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.captured = CapturedLog()

        def log(self, sev: Any, msg: str) -> None:
            name, level = levels.get(sev, ("INFO", logging.DEBUG))
            _LOG.log(level, "TensorRT %s: %s", name, msg)
            if level >= logging.WARNING:
                self.captured.messages.append(f"{name}: {msg}")

    return EdgeVisionTrtLogger
