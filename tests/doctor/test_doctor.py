"""`edgevision doctor`: this machine as it is (no GPU, no GStreamer here), a bundle, no OpenCV."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevision.cli.app import main
from edgevision.doctor import EXIT_CANNOT_RUN, diagnose
from edgevision.doctor.probes import parse_nv_tegra_release
from edgevision.doctor.verdicts import tensorrt_fix
from edgevision.opencv import import_cv2, parse_build_information
from edgevision.profile.machine import gpus
from tests.helpers import tiny_bundle

NO_TENSORRT = importlib.util.find_spec("tensorrt") is None


def run_doctor(args: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout with its line wrapping undone (rich wraps at 80 here), stderr."""
    with pytest.raises(SystemExit) as info:
        main(["doctor", *map(str, args)])
    out = capsys.readouterr()
    return info.value.code or 0, " ".join(out.out.split()), out.err


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_doctor_reports_this_machine(tmp_path, capsys):
    out_json = tmp_path / "doctor.json"
    code, out, _ = run_doctor(["--json", out_json], capsys)
    assert code == 0
    report = json.loads(out_json.read_text())
    cv2 = import_cv2()
    built = parse_build_information(cv2.getBuildInformation())["video_io"]
    cv = report["opencv"]
    assert cv["version"] == cv2.__version__ and cv["file"] == cv2.__file__
    assert cv["gstreamer"] is built["gstreamer"] and cv["ffmpeg"] is built["ffmpeg"]
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    sources, backends = by_name(report["sources"]), by_name(report["backends"])
    assert sources["file"]["ok"] is built["ffmpeg"] and sources["synthetic"]["ok"] is True
    assert backends["ort"]["ok"] is True
    if not built["gstreamer"]:  # as on this project's machines: PyPI's wheel
        for kind in ("csi", "gst"):
            assert sources[kind]["ok"] is False and "no GStreamer" in sources[kind]["detail"]
            assert "--system-site-packages" in sources[kind]["fix"]
        if cv["wheel"]:
            assert sources["csi"]["fix"].startswith(f"`pip uninstall {cv['wheel']}")
        assert "GStreamer no" in out and "fix:" in out and "as for csi" in out
    if NO_TENSORRT:
        assert report["tensorrt"]["error"] == "No module named 'tensorrt'"
        assert backends["tensorrt"]["ok"] is False and backends["tensorrt"]["fix"]
    if not gpus():  # no NVIDIA driver here
        assert report["cuda"]["devices"] == [] and report["cuda"]["error"]
    if not Path("/etc/nv_tegra_release").exists():
        assert report["jetson"]["is_jetson"] is False and "not a Jetson" in out
    if not report["video_devices"]:
        assert sources["v4l2"]["ok"] is False and "ls /dev/video*" in sources["v4l2"]["fix"]
    assert report["bundle"] is None and report["ok"] is True


def test_a_bundle_that_runs_here(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path)
    code, out, _ = run_doctor(["--bundle", bundle, "--json", tmp_path / "d.json"], capsys)
    assert code == 0, out
    checked = json.loads((tmp_path / "d.json").read_text())["bundle"]
    assert checked["ok"] is True and checked["backend"] == "auto"
    steps = by_name(checked["steps"])
    assert list(steps) == ["verify", "opencv", "backend", "runner"]
    assert steps["backend"]["detail"] == "ort (auto)"
    assert "one inference on zeros" in steps["runner"]["detail"]
    assert "runs here" in out


def test_a_tampered_bundle_cannot_run_here(tmp_path, capsys):
    bundle = tiny_bundle(tmp_path)
    (bundle / "model.fp32.onnx").write_bytes(b"not the model")
    code, out, _ = run_doctor(["--bundle", bundle], capsys)
    assert code == EXIT_CANNOT_RUN
    assert "does not match its SHA-256" in out and "cannot run here" in out


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_asked_for_where_it_is_missing(tmp_path):
    report = diagnose(tiny_bundle(tmp_path), backend="tensorrt")
    assert not report.ok
    runner = report.bundle.steps[-1]
    assert runner.ok is False and "not available" in runner.detail
    assert runner.fix.endswith("or run it on the CPU: --backend ort")


def test_an_unknown_backend_is_a_user_error(tmp_path, capsys):
    code, _, err = run_doctor(["--bundle", tmp_path, "--backend", "cuda"], capsys)
    assert code == 2 and "unknown backend 'cuda'" in err


def test_doctor_without_cv2(tmp_path):
    """No OpenCV at all: every source says how to get one, a bundle cannot run; no traceback."""
    bundle = tiny_bundle(tmp_path)
    out_json = tmp_path / "d.json"
    code = (
        "import sys; sys.modules['cv2'] = None; from edgevision.cli.app import main; "
        f"main(['doctor', '--bundle', {str(bundle)!r}, '--json', {str(out_json)!r}])"
    )
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == EXIT_CANNOT_RUN, run.stderr
    assert "Traceback" not in run.stderr
    report = json.loads(out_json.read_text())
    assert report["opencv"]["importable"] is False
    assert report["opencv"]["error"].startswith("OpenCV (cv2) cannot be imported")
    for source in report["sources"]:
        assert source["ok"] is False and "edgevision[opencv]" in source["fix"]
    steps = by_name(report["bundle"]["steps"])
    assert steps["opencv"]["ok"] is False and steps["runner"]["ok"] is True


def test_doctor_imports_no_torch():
    code = (
        "import sys; from edgevision.doctor import diagnose; diagnose(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    ("line", "l4t", "jetpack", "python"),
    [
        ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64",
         "36.4.3", "6.2", "3.10"),
        ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64",
         "36.3.0", "6.0", "3.10"),
        ("# R38 (release), REVISION: 2.1, GCID: 41830063, BOARD: generic, EABI: aarch64",
         "38.2.1", "7.0", "3.12"),
        ("# R38 (release), REVISION: 9.0, GCID: 1, BOARD: generic, EABI: aarch64",
         "38.9.0", "7.x", "3.12"),
    ],
)  # fmt: skip
def test_nv_tegra_release(line, l4t, jetpack, python):
    found = parse_nv_tegra_release(line)
    assert (found["l4t"], found["jetpack"], found["system_python"]) == (l4t, jetpack, python)


def test_nv_tegra_release_garbage():
    assert parse_nv_tegra_release("not a release file") is None


def _probes(version="3.10.12", venv=True, system_site=False, copies=(), jetson=True):
    return {
        "tensorrt": {"error": "No module named 'tensorrt'", "system_copies": list(copies)},
        "python": {"version": version, "venv": venv, "system_site_packages": system_site},
        "jetson": {"is_jetson": jetson},
    }


def test_tensorrt_fix_names_the_venv_that_hides_jetpacks_bindings():
    fix = tensorrt_fix(_probes(copies=["/usr/lib/python3.10/dist-packages/tensorrt"]))
    assert "/usr/lib/python3.10/dist-packages/tensorrt" in fix
    assert "--system-site-packages" in fix


def test_tensorrt_fix_for_another_python_than_jetpacks():
    fix = tensorrt_fix(_probes("3.12.3", copies=["/usr/lib/python3.10/dist-packages/tensorrt"]))
    assert "another Python than this 3.12" in fix


def test_tensorrt_fix_on_a_jetson_without_it_and_elsewhere():
    assert "nvidia-tensorrt" in tensorrt_fix(_probes())
    assert "edgevision[tensorrt]" in tensorrt_fix(_probes(jetson=False))
