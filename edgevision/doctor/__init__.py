"""`edgevision doctor`: what this device can do, and whether a bundle can run here.

``diagnose(bundle=None, backend="auto") -> DoctorReport`` probes Python, NumPy, OpenCV (its
version, what it was built with, which file was loaded and which PyPI wheel it belongs to),
ONNX Runtime, TensorRT, the CUDA device, the JetPack / L4T release and the video devices, then
says for each source kind and backend whether it works here and, if not, the fix. Torch-free,
and it never imports cv2 before it is asked whether cv2 exists.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgevision.doctor import probes
from edgevision.doctor.verdicts import (
    BundleCheck,
    Verdict,
    backend_verdicts,
    check_bundle,
    source_verdicts,
)
from edgevision.opencv import describe_opencv

EXIT_CANNOT_RUN = 3  # `doctor --bundle B`: B cannot run here


@dataclass
class DoctorReport:
    """What `diagnose` found; ``ok`` is False only when a given bundle cannot run here."""

    environment: dict[str, Any]
    sources: list[Verdict]
    backends: list[Verdict]
    bundle: BundleCheck | None = None
    seconds: float = 0.0
    created_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def ok(self) -> bool:
        return self.bundle is None or self.bundle.ok

    def to_dict(self) -> dict[str, Any]:
        from edgevision import __version__

        env = dict(self.environment)
        env["opencv"] = env["opencv"].to_dict()
        return {
            "edgevision": __version__,
            "created_at": self.created_at,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            **env,
            "sources": [v.to_dict() for v in self.sources],
            "backends": [v.to_dict() for v in self.backends],
            "bundle": self.bundle.to_dict() if self.bundle else None,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON (atomically)."""
        from edgevision.fileio import atomic_write_json

        return atomic_write_json(path, self.to_dict())


def probe_environment() -> dict[str, Any]:
    """Every probe, by name (``opencv`` is an `OpenCVInfo`, the rest plain data)."""
    return {
        "python": probes.probe_python(),
        "numpy": probes.probe_module("numpy"),
        "opencv": describe_opencv(),
        "onnxruntime": probes.probe_onnxruntime(),
        "tensorrt": probes.probe_tensorrt(),
        "cuda": probes.probe_cuda(),
        "jetson": probes.probe_jetson(),
        "video_devices": probes.probe_video_devices(),
        "torch": probes.torch_installed(),
    }


def diagnose(bundle: str | os.PathLike[str] | None = None, backend: str = "auto") -> DoctorReport:
    """Probe this machine; with ``bundle``, also check that it runs here on ``backend``."""
    from edgevision.backends.select import backend_names
    from edgevision.errors import ConfigError

    if backend not in backend_names():
        raise ConfigError(f"unknown backend {backend!r}", f"use one of: {backend_names()}")
    start = time.perf_counter()
    env = probe_environment()
    backends = backend_verdicts(env)
    checked = check_bundle(bundle, backend, env, backends) if bundle is not None else None
    report = DoctorReport(env, source_verdicts(env), backends, checked)
    report.seconds = time.perf_counter() - start
    return report


__all__ = ["EXIT_CANNOT_RUN", "BundleCheck", "DoctorReport", "Verdict", "diagnose"]
