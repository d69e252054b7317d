"""One exception tree.

`EdgeVisionError` is for the user's mistakes and the world's (bad input, a missing device, a
tampered bundle): it carries what was wrong and how to fix it, and the CLI prints it as one line
without a traceback. Anything else that escapes is a bug in edgevision and keeps its traceback.
"""

from __future__ import annotations


class EdgeVisionError(Exception):
    """A user-facing error: `message` says what was wrong, `fix` says what to do about it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class SpecError(EdgeVisionError):
    """A ModelSpec that is missing fields, out of range or of an unknown schema version."""


class DataError(EdgeVisionError):
    """A dataset, image or manifest that cannot be used."""


class CorruptImageError(DataError):
    """An image file that cannot be decoded (zero bytes, truncated, not an image)."""


class CalibrationError(EdgeVisionError):
    """A calibration set that is empty, too small or unusable."""


class BuildError(EdgeVisionError):
    """Export, quantization or verification failed its checks."""


class BundleError(EdgeVisionError):
    """A bundle that is missing files, tampered with, stale or of an unknown schema."""


class DependencyError(EdgeVisionError, ImportError):
    """A library this machine needs is missing or broken (OpenCV, ...); also an ImportError."""


class BackendError(EdgeVisionError):
    """A backend that is unknown, not installed on this machine, or given wrong inputs."""


class SourceError(EdgeVisionError):
    """A video source that cannot be opened or has failed for good."""


class SinkError(EdgeVisionError):
    """An output (events file, video, window) that cannot be opened or written."""


class OutputError(EdgeVisionError):
    """An output path that cannot be written, or that holds something edgevision does not own."""


class ConfigError(EdgeVisionError):
    """An option out of range (top-k, threshold, smoothing window, reconnect policy, ...)."""


class BudgetExceededError(EdgeVisionError):
    """A latency or accuracy budget was missed."""


class RegistryError(EdgeVisionError):
    """An unknown name was looked up in a registry."""
