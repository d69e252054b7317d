"""Whether each source kind, each backend and a given bundle will work here, and if not the fix.

Source kinds are a table of what each needs (principle 7); each need is a function of the
probes that says yes, or no with why and the fix. The bundle check runs what ``edgevision run``
runs: the bundle's verification, the backend choice, the runner (TensorRT: the engine that fits
this GPU and TensorRT) and one inference on zeros.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edgevision.opencv import INSTALL_FIX, OpenCVInfo, gstreamer_problem


@dataclass(frozen=True)
class Verdict:
    """One row: ``ok`` (None: not applicable here), what was found, and the fix when not ok."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Probes = dict[str, Any]  # what `diagnose` found: python, opencv (OpenCVInfo), tensorrt, ...
Need = Callable[[Probes], "tuple[bool, str, str | None]"]  # (ok, detail, fix)


# -- sources ------------------------------------------------------------------------------
def _cv2(p: Probes) -> tuple[bool, str, str | None]:
    cv: OpenCVInfo = p["opencv"]
    if not cv.importable:
        return False, cv.error or "OpenCV (cv2) cannot be imported", cv.fix or INSTALL_FIX
    return True, f"OpenCV {cv.version}", None


def _ffmpeg(p: Probes) -> tuple[bool, str, str | None]:
    if p["opencv"].ffmpeg:
        return True, "OpenCV has FFmpeg", None
    fix = "an OpenCV built with FFmpeg (the PyPI wheels and JetPack's have it)"
    return False, "this OpenCV was built without FFmpeg", fix


def _v4l2(p: Probes) -> tuple[bool, str, str | None]:
    if p["opencv"].v4l2:
        return True, "OpenCV has V4L2", None
    return False, "this OpenCV was built without V4L2", "an OpenCV built with V4L2"


def _video_device(p: Probes) -> tuple[bool, str, str | None]:
    devices = p["video_devices"]
    if not devices:
        fix = "plug in a USB camera and check `ls /dev/video*` (`v4l2-ctl --list-devices`)"
        return False, "no /dev/video* device", fix
    names = ", ".join(f"{d['path']} ({d['name']})" if d["name"] else d["path"] for d in devices)
    return True, names, None


def _gstreamer(p: Probes) -> tuple[bool, str, str | None]:
    cv: OpenCVInfo = p["opencv"]
    if cv.gstreamer:
        return True, "OpenCV has GStreamer", None
    _, fix = gstreamer_problem(cv)  # the full reason is the SourceError's; a table wants less
    detail = f"OpenCV {cv.version} has no GStreamer"
    if cv.wheel:
        detail += f": PyPI's {cv.wheel} wheel, which shadows the system OpenCV"
    return False, detail, fix


def _argus(p: Probes) -> tuple[bool, str, str | None]:
    plugin = p["jetson"]["argus"]
    if plugin:
        return True, f"nvarguscamerasrc ({plugin})", None
    fix = "a Jetson with JetPack's GStreamer plugins (`sudo apt install nvidia-l4t-gstreamer`)"
    return False, "no nvarguscamerasrc GStreamer plugin (not a Jetson)", fix


NEEDS: dict[str, Need] = {
    "cv2": _cv2,
    "ffmpeg": _ffmpeg,
    "v4l2": _v4l2,
    "video_device": _video_device,
    "gstreamer": _gstreamer,
    "argus": _argus,
}

# (kind, example URI, what it needs), in the order `edgevision run --help` lists them.
SOURCE_KINDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("file", "clip.mp4", ("cv2", "ffmpeg")),
    ("v4l2", "v4l2:///dev/video0", ("cv2", "v4l2", "video_device")),
    ("csi", "csi://0", ("cv2", "gstreamer", "argus")),
    ("rtsp", "rtsp://host/stream", ("cv2", "ffmpeg")),
    ("gst", "gst:... ! appsink", ("cv2", "gstreamer")),
    ("images", "frames/ or 'frames/*.jpg'", ("cv2",)),
    ("synthetic", "synthetic://", ("cv2",)),
)


def source_verdicts(p: Probes) -> list[Verdict]:
    """One verdict per source kind: the first need that fails, else all that was found."""
    out = []
    for kind, example, needs in SOURCE_KINDS:
        found = []
        for need in needs:
            ok, detail, fix = NEEDS[need](p)
            if not ok:
                out.append(Verdict(kind, False, f"{example}: {detail}", fix))
                break
            found.append(detail)
        else:
            out.append(Verdict(kind, True, f"{example}: {'; '.join(found)}"))
    return out


# -- backends -----------------------------------------------------------------------------
def _ort(p: Probes) -> Verdict:
    from edgevision.backends.select import INSTALL_HINTS

    ort = p["onnxruntime"]
    if ort["error"]:
        return Verdict("ort", False, f"ONNX Runtime: {ort['error']}", INSTALL_HINTS["ort"])
    providers = ", ".join(ort["providers"]) or "none"
    return Verdict("ort", True, f"ONNX Runtime {ort['version']} ({providers})")


def tensorrt_fix(p: Probes) -> str:
    """How to get TensorRT importable here: JetPack's bindings belong to the system Python."""
    trt, py, jetson = p["tensorrt"], p["python"], p["jetson"]
    here = ".".join(py["version"].split(".")[:2])
    mine = [c for c in trt["system_copies"] if f"/python{here}/" in c or "/python3/" in c]
    if mine and py["venv"] and not py["system_site_packages"]:
        return (
            f"JetPack's TensorRT is at {mine[0]}, which this venv does not see: recreate it with "
            "`python3 -m venv --system-site-packages`"
        )
    if trt["system_copies"] and not mine:
        return (
            f"the system TensorRT ({', '.join(trt['system_copies'])}) is for another Python than "
            f"this {here}: run edgevision on the system Python (JetPack 6: 3.10, JetPack 7: 3.12)"
        )
    if jetson["is_jetson"]:
        return "install JetPack's TensorRT: `sudo apt install nvidia-tensorrt` (python3-libnvinfer)"
    return "with an NVIDIA GPU, `pip install 'edgevision[tensorrt]'`; else use --backend ort"


def _tensorrt(p: Probes) -> Verdict:
    trt, cuda = p["tensorrt"], p["cuda"]
    if trt["error"]:
        return Verdict("tensorrt", False, f"TensorRT: {trt['error']}", tensorrt_fix(p))
    if not cuda["devices"]:
        why = cuda["error"] or "no CUDA device"
        fix = cuda.get("fix") or "check the driver (nvidia-smi; tegrastats on a Jetson)"
        return Verdict("tensorrt", False, f"TensorRT {trt['version']}, but {why}", fix)
    dev = cuda["devices"][0]
    detail = f"TensorRT {trt['version']} on {dev['name']} (sm {dev['compute_capability']})"
    return Verdict("tensorrt", True, f"{detail} via {cuda['module']}")


def _torch(p: Probes) -> Verdict:
    if p["torch"]:
        return Verdict("torch", True, "installed: the PyTorch reference (not for the vehicle)")
    detail = "not installed (the PyTorch reference; only the workstation needs it)"
    return Verdict("torch", None, detail)


def backend_verdicts(p: Probes) -> list[Verdict]:
    """ONNX Runtime, TensorRT (+ a CUDA device) and the PyTorch reference."""
    return [_ort(p), _tensorrt(p), _torch(p)]


# -- a bundle -----------------------------------------------------------------------------
@dataclass
class BundleCheck:
    """Whether ``edgevision run BUNDLE --backend B`` can run here, step by step."""

    path: str
    backend: str
    ok: bool
    steps: list[Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [s.to_dict() for s in self.steps]}


def check_bundle(
    path: str | os.PathLike[str], backend: str, p: Probes, verdicts: list[Verdict]
) -> BundleCheck:
    """Open and verify the bundle, choose the backend as ``run`` does, load it, infer once."""
    steps: list[Verdict] = []
    ok = _bundle_steps(os.fspath(path), backend, p, verdicts, steps)
    return BundleCheck(os.fspath(path), backend, ok, steps)


def _bundle_steps(
    path: str, backend: str, p: Probes, verdicts: list[Verdict], steps: list[Verdict]
) -> bool:
    from edgevision.backends.select import AUTO, choose_backend, create_runner
    from edgevision.bundle import Bundle
    from edgevision.errors import EdgeVisionError

    try:
        bundle = Bundle.open(path, verify=True)
    except EdgeVisionError as exc:
        steps.append(Verdict("verify", False, exc.message, exc.fix))
        return False
    arts = ", ".join(sorted(bundle.artifacts))
    files = len(bundle.manifest["files"])
    steps.append(Verdict("verify", True, f"{files} files match their SHA-256; artifacts: {arts}"))
    cv_ok, cv_detail, cv_fix = _cv2(p)
    steps.append(
        Verdict("opencv", cv_ok, f"{cv_detail} (preprocess and the sources need it)", cv_fix)
    )
    name = backend
    try:
        name = choose_backend(bundle) if backend == AUTO else backend
        steps.append(Verdict("backend", True, f"{name}" + (" (auto)" if backend == AUTO else "")))
        runner = create_runner(bundle, name, threads=1)
        steps.append(_infer_once(runner))
    except EdgeVisionError as exc:
        steps.append(Verdict("runner", False, exc.message, _with_fallback(exc.fix, name, verdicts)))
    return all(step.ok for step in steps)


def _infer_once(runner: Any) -> Verdict:
    import numpy as np

    with runner:
        meta = runner.input_metadata()[0]
        shape = tuple(d if isinstance(d, int) else 1 for d in meta.shape)
        start = time.perf_counter()
        runner.infer(np.zeros(shape, meta.dtype))
        ms = (time.perf_counter() - start) * 1e3
    return Verdict("runner", True, f"{runner.name}: loaded, one inference on zeros in {ms:.1f} ms")


def _with_fallback(fix: str | None, backend: str, verdicts: list[Verdict]) -> str | None:
    ort = next((v for v in verdicts if v.name == "ort"), None)
    if backend == "tensorrt" and ort is not None and ort.ok:
        return (fix + "; " if fix else "") + "or run it on the CPU: --backend ort"
    return fix
