"""OpenCV is the user's choice: a missing cv2 is one clear error, a GStreamer-less one is named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgevision import opencv
from edgevision.errors import DependencyError, EdgeVisionError
from edgevision.opencv import (
    OpenCVInfo,
    describe_opencv,
    gstreamer_problem,
    import_cv2,
    other_cv2,
    parse_build_information,
)
from tests.helpers import tiny_bundle

REPO = Path(__file__).resolve().parents[1]

# The lines of a JetPack-style build (abridged): GStreamer and CUDA in, a GTK GUI.
JETSON_BUILD = """
General configuration for OpenCV 4.8.0 =====================================
  GUI:                           GTK3
    GTK+:                        YES (ver 3.24.33)

  Video I/O:
    DC1394:                      YES (2.2.6)
    FFMPEG:                      YES
      avcodec:                   YES (58.134.100)
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)

  Parallel framework:            TBB (ver 2021.5 interface 12050)

  NVIDIA CUDA:                   YES (ver 12.6, CUFFT CUBLAS FAST_MATH)
"""


def test_a_missing_cv2_is_a_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import cv2` finds when it is absent
    with pytest.raises(DependencyError, match=r"OpenCV \(cv2\) cannot be imported") as info:
        import_cv2()
    assert isinstance(info.value, ImportError) and isinstance(info.value, EdgeVisionError)
    assert "edgevision[opencv]" in info.value.fix and "--system-site-packages" in info.value.fix
    with pytest.raises(DependencyError):
        from edgevision.opencv import cv2  # noqa: F401


def test_a_cv2_built_for_another_numpy_says_so_in_one_line(monkeypatch, capsys):
    """What JetPack 6's OpenCV (NumPy 1.x) does under NumPy 2, as met in a venv made with
    --system-site-packages on Debian's python3-opencv: a page on stderr, then ImportError."""

    def fail(name):
        print("A module that was compiled using NumPy 1.x cannot be run in", file=sys.stderr)
        raise ImportError("numpy.core.multiarray failed to import\n(more lines)")

    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    monkeypatch.setattr(opencv.importlib, "import_module", fail)
    with pytest.raises(DependencyError) as info:
        import_cv2()
    assert info.value.message.endswith("numpy.core.multiarray failed to import")
    assert "numpy<2" in info.value.fix
    assert capsys.readouterr().err == ""  # the page is not printed over the one-line error


def test_other_cv2_finds_a_system_extension_module(monkeypatch, tmp_path):
    """Debian / Ubuntu install cv2 as one .so in dist-packages, JetPack's 4.8 as a folder."""
    system = tmp_path / "dist-packages"
    (system / "cv2").mkdir(parents=True)
    so = system / "cv2.cpython-310-aarch64-linux-gnu.so"
    so.write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(system), *sys.path])
    loaded = import_cv2().__file__
    found = other_cv2(loaded)
    assert str(system / "cv2") in found and str(so) in found
    assert os.path.realpath(Path(loaded).parent) not in found
    assert other_cv2(str(so)).count(str(so)) == 0


def test_run_without_cv2_is_a_one_line_error(tmp_path):
    """`edgevision run` in a process where cv2 cannot be imported: exit 2, no traceback."""
    bundle = tiny_bundle(tmp_path)
    code = (
        "import sys; sys.modules['cv2'] = None; from edgevision.cli.app import main; "
        f"main(['run', {str(bundle)!r}, '--source', 'synthetic://', '--max-frames', '1'])"
    )
    env = {**os.environ, "COLUMNS": "400"}  # rich would wrap the line at 80 columns
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("error: OpenCV (cv2) cannot be imported:"), out.stderr
    assert lines[1].startswith("fix: `pip install 'edgevision[opencv]'`"), out.stderr


def test_build_information_of_a_jetson_opencv():
    features = parse_build_information(JETSON_BUILD)
    assert features["video_io"] == {
        "dc1394": True,
        "ffmpeg": True,
        "gstreamer": True,
        "v4l/v4l2": True,
    }
    assert features["cuda"] is True and features["gui"] == "GTK3"


def test_build_information_of_this_opencv():
    cv2 = import_cv2()
    features = parse_build_information(cv2.getBuildInformation())
    assert "gstreamer" in features["video_io"] and "ffmpeg" in features["video_io"]
    info = describe_opencv()
    assert info.importable and info.version == cv2.__version__ and info.file == cv2.__file__
    assert info.gstreamer is features["video_io"]["gstreamer"]


def test_the_loaded_wheel_is_named():
    info = describe_opencv()
    if not info.wheels:
        pytest.skip("no PyPI OpenCV wheel here (a system OpenCV)")
    assert info.wheel in info.wheels, info  # the cv2 loaded here is that wheel's


def test_gstreamer_problem_names_the_shadowing_wheel():
    info = OpenCVInfo(
        True,
        version="4.10.0",
        file="/venv/lib/python3.10/site-packages/cv2/__init__.py",
        wheel="opencv-python-headless",
        others=["/usr/lib/python3.10/dist-packages/cv2"],
        wheels={"opencv-python-headless": "4.10.0.84"},
    )
    reason, fix = gstreamer_problem(info)
    assert "built without GStreamer" in reason
    assert "opencv-python-headless wheel" in reason
    assert "shadows the system OpenCV at /usr/lib/python3.10/dist-packages/cv2" in reason
    assert fix.startswith("`pip uninstall opencv-python-headless` in this environment")
    assert "--system-site-packages" in fix and "GStreamer" in fix


def test_gstreamer_problem_of_a_system_build_without_it():
    info = OpenCVInfo(True, version="4.6.0", file="/usr/lib/python3/dist-packages/cv2.so")
    reason, fix = gstreamer_problem(info)
    assert "wheel" not in reason and "pip uninstall" not in fix
    assert "-DWITH_GSTREAMER=ON" in fix


def test_only_edgevision_opencv_imports_cv2():
    """Every module takes cv2 from edgevision.opencv, so a missing one is always the same error."""
    pattern = re.compile(r"^\s*(import cv2\b|from cv2\b)", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "edgevision").rglob("*.py"))
        if path.name != "opencv.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "use `from edgevision.opencv import cv2` in: " + ", ".join(offenders)
