"""What machine a profile ran on: numbers mean little without it.

Every probe is best effort: a missing ``nvidia-smi``, ``/proc/cpuinfo`` or TensorRT gives
``None``, never an error, so the profile runs the same on a laptop, a CI runner and a Jetson.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_NVIDIA_SMI_QUERY = "name,driver_version,memory.total"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        ):
            key, _, value = line.partition(":")
            # x86 says "model name"; ARM boards (Jetson) often say only "Hardware"/"Model".
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs from ``nvidia-smi`` (empty when it is absent or fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={_NVIDIA_SMI_QUERY}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = _NVIDIA_SMI_QUERY.split(",")
    return [
        dict(zip(keys, (v.strip() for v in line.split(",")), strict=False))
        for line in out.splitlines()
        if line.strip()
    ]


def jetson_model() -> str | None:
    """The board name on a Jetson (device tree), else ``None``."""
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def package_version(name: str) -> str | None:
    """An installed distribution's version without importing it (TensorRT stays unloaded)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def opencv_version() -> str | None:
    """The loaded cv2's version (a Jetson's system OpenCV has no pip metadata), else a wheel's."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and getattr(cv2, "__version__", None):
        return str(cv2.__version__)
    from edgevision.opencv import installed_wheels

    return next(iter(installed_wheels().values()), None)


def describe_machine() -> dict[str, Any]:
    """CPU, cores, GPUs, OS and the versions of the libraries that set the numbers."""
    from edgevision import __version__

    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_arch": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "board": jetson_model(),
        "gpus": gpus(),
        "versions": {
            "edgevision": __version__,
            "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
            "tensorrt": package_version("tensorrt"),
            "numpy": package_version("numpy"),
            "opencv": opencv_version(),
        },
    }
