"""Which OpenCV this process uses and what it was built with; ``cv2`` for the rest of edgevision.

OpenCV is not a dependency of the base install. On a Jetson the system OpenCV (JetPack's, built
with GStreamer, which ``csi://`` and ``gst:`` sources need) must be the one imported, and a PyPI
wheel (``opencv-python-headless`` has no GStreamer) installed next to it shadows it. Elsewhere
``pip install 'edgevision[opencv]'`` brings the wheel.

Every edgevision module takes ``cv2`` from here (``from edgevision.opencv import cv2``), so a
missing or broken OpenCV is one `DependencyError` naming the fix, not an ImportError traceback.
Importing this module itself never imports cv2: `edgevision doctor` probes it through
`describe_opencv`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from edgevision.errors import DependencyError, SourceError

# PyPI's OpenCV distributions: each installs a top-level `cv2` package.
WHEELS = (
    "opencv-python-headless",
    "opencv-python",
    "opencv-contrib-python-headless",
    "opencv-contrib-python",
)
INSTALL_FIX = (
    "`pip install 'edgevision[opencv]'` (PyPI's OpenCV: no GStreamer); on a Jetson use JetPack's "
    "OpenCV instead (`sudo apt install nvidia-opencv`, seen from a venv made with "
    "`python3 -m venv --system-site-packages`); see the README, 'On a Jetson'"
)
NUMPY_FIX = (
    "this cv2 was built against another NumPy major version (JetPack 6's OpenCV needs NumPy 1.x): "
    "`pip install 'numpy<2'` in this environment"
)
SYSTEM_FIX = (
    "use the system OpenCV: on a Jetson JetPack's (`sudo apt install nvidia-opencv`, built with "
    "GStreamer), seen from a venv made with `python3 -m venv --system-site-packages`; elsewhere "
    "an OpenCV built with -DWITH_GSTREAMER=ON (Debian/Ubuntu: `sudo apt install python3-opencv`); "
    "`edgevision doctor` shows which cv2 is loaded"
)


def import_cv2() -> ModuleType:
    """``import cv2``, or `DependencyError` saying how to get a working OpenCV."""
    if "cv2" in sys.modules and sys.modules["cv2"] is not None:
        return sys.modules["cv2"]
    # A cv2 built for NumPy 1.x under NumPy 2 prints a page (and a stack) before it fails; the
    # error below says it in one line, so that page is kept only when the import succeeds.
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise):
            module = importlib.import_module("cv2")
    except ImportError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        numpy_abi = "numpy" in str(exc).lower() or "NumPy 1.x" in noise.getvalue()
        fix = NUMPY_FIX if numpy_abi else INSTALL_FIX
        raise DependencyError(f"OpenCV (cv2) cannot be imported: {reason}", fix) from None
    if noise.getvalue():
        sys.stderr.write(noise.getvalue())
    return module


def __getattr__(name: str) -> Any:
    # `from edgevision.opencv import cv2` lands here: the import happens on first use.
    if name == "cv2":
        return import_cv2()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- build information --------------------------------------------------------------------
def parse_build_information(info: str) -> dict[str, Any]:
    """The parts of ``cv2.getBuildInformation()`` edgevision cares about.

    ``video_io`` maps lower-case backend names as OpenCV prints them ("ffmpeg", "gstreamer",
    "v4l/v4l2", ...) to whether they are built in; ``cuda`` is the "NVIDIA CUDA" line; ``gui``
    the GUI backend ("NONE" for the headless wheels).
    """
    features: dict[str, Any] = {"video_io": _video_io(info), "cuda": False, "gui": "NONE"}
    for line in info.splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if name.strip() == "NVIDIA CUDA":
            features["cuda"] = value.strip().upper().startswith("YES")
        elif name.strip() == "GUI" and value.strip():
            features["gui"] = value.strip()
    return features


def _video_io(info: str) -> dict[str, bool]:
    start = info.find("Video I/O:")
    found: dict[str, bool] = {}
    if start < 0:
        return found
    for line in info[start:].splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break  # the next top-level section
        name, sep, value = line.partition(":")
        if sep and line.startswith("    ") and not line.startswith("      "):
            found[name.strip().lower()] = value.strip().upper().startswith("YES")
    return found


# -- where this cv2 came from --------------------------------------------------------------
def installed_wheels() -> dict[str, str]:
    """PyPI OpenCV distributions visible to this interpreter, with their versions."""
    out = {}
    for name in WHEELS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def owning_wheel(module_file: str | None) -> str | None:
    """The PyPI distribution whose files include ``module_file`` (the loaded cv2), if any."""
    if not module_file:
        return None
    target = _real(module_file)
    for name in installed_wheels():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        inits = [e for e in dist.files or () if e.parts[:1] == ("cv2",) and e.name == "__init__.py"]
        if any(_real(str(dist.locate_file(e))) == target for e in inits):
            return name
    return None


def other_cv2(module_file: str | None) -> list[str]:
    """Other ``cv2`` packages on ``sys.path`` and in the system's dist-packages (shadowed ones).

    The system folders are listed even when this interpreter does not see them (a venv made
    without ``--system-site-packages``): that is where JetPack's OpenCV is.
    """
    loaded = _real(str(Path(module_file).parent)) if module_file else None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    folders = [*sys.path, f"/usr/lib/{version}/dist-packages", "/usr/lib/python3/dist-packages"]
    folders.append(f"/usr/local/lib/{version}/dist-packages")
    found: list[str] = []
    for folder in folders:
        base = Path(folder or ".")
        # A package folder (wheels, JetPack's 4.8) or one extension module (Debian's cv2.*.so).
        candidates = [base / "cv2", *sorted(base.glob("cv2.*.so"))] if base.is_dir() else []
        for candidate in candidates:
            if not candidate.exists():
                continue
            real = _real(str(candidate))
            if real not in (loaded, module_file and _real(module_file)) and real not in found:
                found.append(real)
    return found


def _real(path: str) -> str:
    return os.path.realpath(path)


@dataclass
class OpenCVInfo:
    """What `describe_opencv` found; ``error`` is set (and the rest empty) when cv2 is absent."""

    importable: bool
    version: str | None = None
    file: str | None = None
    wheel: str | None = None  # the PyPI distribution the loaded cv2 belongs to; None: system/other
    gstreamer: bool = False
    ffmpeg: bool = False
    v4l2: bool = False
    cuda: bool = False
    gui: str = "NONE"
    others: list[str] = field(default_factory=list)
    wheels: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_opencv() -> OpenCVInfo:
    """Import cv2 (if it can be) and say what it is; never raises for a missing OpenCV."""
    try:
        cv2 = import_cv2()
    except DependencyError as exc:
        return OpenCVInfo(
            False, others=other_cv2(None), wheels=installed_wheels(), error=exc.message, fix=exc.fix
        )
    features = parse_build_information(cv2.getBuildInformation())
    io = features["video_io"]
    file = getattr(cv2, "__file__", None)
    return OpenCVInfo(
        True,
        version=str(cv2.__version__),
        file=file,
        wheel=owning_wheel(file),
        gstreamer=io.get("gstreamer", False),
        ffmpeg=io.get("ffmpeg", False),
        v4l2=io.get("v4l/v4l2", False),
        cuda=features["cuda"],
        gui=features["gui"],
        others=other_cv2(file),
        wheels=installed_wheels(),
    )


def gstreamer_problem(info: OpenCVInfo) -> tuple[str, str]:
    """Why this OpenCV cannot run a GStreamer source, and the fix: (reason, fix).

    A PyPI wheel is named as what shadows the system OpenCV (JetPack's has GStreamer).
    """
    where = f"OpenCV {info.version} from {info.file}"
    reason = f"this {where} was built without GStreamer (cv2.getBuildInformation() says NO)"
    if info.wheel is None:
        return reason, SYSTEM_FIX
    if info.others:
        shadowed = f"shadows the system OpenCV at {', '.join(info.others)}"
    else:
        shadowed = "shadows any system OpenCV"
    reason += (
        f"; it is PyPI's {info.wheel} wheel, which has no GStreamer and {shadowed} "
        "(JetPack's is built with GStreamer)"
    )
    uninstall = " ".join(sorted(info.wheels)) or info.wheel
    return reason, f"`pip uninstall {uninstall}` in this environment, then {SYSTEM_FIX}"


def gstreamer_missing_error(uri: str) -> SourceError:
    """The `SourceError` for a ``csi://`` or ``gst:`` source on an OpenCV without GStreamer."""
    reason, fix = gstreamer_problem(describe_opencv())
    return SourceError(f"cannot open {uri}: {reason}", fix)


__all__ = [
    "INSTALL_FIX",
    "WHEELS",
    "OpenCVInfo",
    "describe_opencv",
    "gstreamer_missing_error",
    "gstreamer_problem",
    "import_cv2",
    "installed_wheels",
    "other_cv2",
    "owning_wheel",
    "parse_build_information",
]
