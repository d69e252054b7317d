"""What this machine has: each probe returns plain data and never raises.

Torch-free and quick: nothing here imports torch; TensorRT, ONNX Runtime and the CUDA module are
imported because what they say about themselves is the point.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
OS_RELEASE = Path("/etc/os-release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

# L4T (Jetson Linux) major release -> (JetPack major, Ubuntu, system Python).
L4T_MAJOR = {35: ("5", "20.04", "3.8"), 36: ("6", "22.04", "3.10"), 38: ("7", "24.04", "3.12")}
# Point releases whose JetPack version is known; others show as "6.x" and so on.
L4T_JETPACK = {
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2.0": "7.0",
    "38.2.1": "7.0",
}
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def first_line(exc: BaseException) -> str:
    """An exception as one line (ImportErrors from native modules span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe_python() -> dict[str, Any]:
    """Version, interpreter, and whether a venv sees the system's site-packages."""
    venv = sys.prefix != sys.base_prefix
    system_site: bool | None = None
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if venv and cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "include-system-site-packages":
                system_site = value.strip().lower() == "true"
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "venv": venv,
        "system_site_packages": system_site if venv else True,
        "machine": platform.machine(),
    }


def probe_module(name: str) -> dict[str, Any]:
    """``{"version", "file"}`` of an importable module, else ``{"error"}``."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # a broken native module raises more than ImportError
        return {"version": None, "file": None, "error": first_line(exc)}
    return {
        "version": str(getattr(module, "__version__", "unknown")),
        "file": getattr(module, "__file__", None),
        "error": None,
    }


def probe_onnxruntime() -> dict[str, Any]:
    """ONNX Runtime's version, execution providers and device."""
    found = probe_module("onnxruntime")
    found.update(providers=[], device=None)
    if found["error"] is None:
        import onnxruntime

        found["providers"] = list(onnxruntime.get_available_providers())
        found["device"] = onnxruntime.get_device()
    return found


def probe_tensorrt() -> dict[str, Any]:
    """TensorRT's version, or why it does not import; plus JetPack's copies for system Pythons."""
    found = probe_module("tensorrt")
    found["system_copies"] = sorted(
        glob.glob("/usr/lib/python3*/dist-packages/tensorrt")
        + glob.glob("/usr/local/lib/python3*/dist-packages/tensorrt")
    )
    return found


def probe_cuda() -> dict[str, Any]:
    """CUDA devices (name, compute capability, memory) through cuda-python or pycuda."""
    from edgevision.backends.tensorrt.cuda_memory import open_memory
    from edgevision.errors import EdgeVisionError

    try:
        memory = open_memory()
    except EdgeVisionError as exc:
        return {"module": None, "devices": [], "error": exc.message, "fix": exc.fix}
    except Exception as exc:  # a driver that half-works raises its own types
        return {"module": None, "devices": [], "error": first_line(exc), "fix": None}
    try:
        devices = [_device(memory, i) for i in range(memory.device_count())]
    except Exception as exc:
        return {"module": memory.name, "devices": [], "error": first_line(exc), "fix": None}
    finally:
        _close(memory)
    error = None if devices else f"{memory.name} sees no CUDA device"
    return {"module": memory.name, "devices": devices, "error": error, "fix": None}


def _device(memory: Any, ordinal: int) -> dict[str, Any]:
    info = memory.device_info(ordinal)
    return {
        "index": ordinal,
        "name": info.name,
        "compute_capability": info.compute_capability,
        "memory_mib": _total_memory_mib(memory, ordinal),
    }


def _total_memory_mib(memory: Any, ordinal: int) -> int | None:
    # Not part of the memory interface (engines do not depend on it): asked of each module.
    try:
        if hasattr(memory, "rt"):  # cuda-python: cudaGetDeviceProperties -> (err, props)
            err, props = memory.rt.cudaGetDeviceProperties(ordinal)[:2]
            return int(props.totalGlobalMem) // 2**20
        if hasattr(memory, "drv"):  # pycuda
            return int(memory.drv.Device(ordinal).total_memory()) // 2**20
    except Exception:
        return None
    return None


def _close(memory: Any) -> None:
    with contextlib.suppress(Exception):
        memory.close()


def parse_nv_tegra_release(text: str) -> dict[str, Any] | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> L4T 36.4.3, JetPack 6.2 (None if not that)."""
    match = _RELEASE.search(text)
    if match is None:
        return None
    major, revision = int(match.group(1)), match.group(2)
    parts = [str(major), *revision.split(".")]
    l4t = ".".join((parts + ["0", "0"])[:3])
    jetpack, ubuntu, python = L4T_MAJOR.get(major, (None, None, None))
    return {
        "l4t": l4t,
        "jetpack": L4T_JETPACK.get(l4t) or (f"{jetpack}.x" if jetpack else None),
        "jetpack_major": jetpack,
        "ubuntu": ubuntu,
        "system_python": python,
    }


def probe_jetson() -> dict[str, Any]:
    """The L4T / JetPack release, the board and the OS (``is_jetson`` False elsewhere)."""
    release = None
    with contextlib.suppress(OSError):
        release = parse_nv_tegra_release(NV_TEGRA_RELEASE.read_text(errors="replace"))
    return {
        "is_jetson": release is not None,
        **(release or {"l4t": None, "jetpack": None, "jetpack_major": None}),
        "board": _board(),
        "os": _os_release(),
        "argus": _argus_plugin(),
    }


def _board() -> str | None:
    # As edgevision.profile.machine.jetson_model, which would import the profiler (and cv2).
    try:
        return DEVICE_TREE_MODEL.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def _os_release() -> str | None:
    try:
        text = OS_RELEASE.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.platform()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return None


def _argus_plugin() -> str | None:
    """The nvarguscamerasrc GStreamer plugin (JetPack's nvidia-l4t-gstreamer), if installed."""
    found = glob.glob("/usr/lib/*/gstreamer-1.0/libgstnvarguscamerasrc.so")
    return found[0] if found else None


def probe_video_devices() -> list[dict[str, Any]]:
    """``/dev/video*`` nodes with the driver's name for each (V4L2 sysfs)."""
    out = []
    for path in sorted(glob.glob("/dev/video*"), key=_node_number):
        sysfs = Path("/sys/class/video4linux") / os.path.basename(path) / "name"
        try:
            name = sysfs.read_text(errors="replace").strip() or None
        except OSError:
            name = None
        out.append({"path": path, "name": name})
    return out


def _node_number(path: str) -> int:
    digits = re.sub(r"\D", "", path)
    return int(digits) if digits else -1


def torch_installed() -> bool:
    """Whether torch could be imported, without importing it."""
    return importlib.util.find_spec("torch") is not None
