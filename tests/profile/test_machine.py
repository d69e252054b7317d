import os
import stat
import sys
import types

from edgevision.profile import describe_machine, machine


def _fake_smi(tmp_path, body: str):
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


def test_describe_machine_without_a_gpu(monkeypatch):
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    m = describe_machine()
    assert m["gpus"] == []
    assert m["cpu_model"] and m["cpu_cores"] >= 1 and 1 <= m["usable_cores"] <= m["cpu_cores"]
    assert m["versions"]["onnxruntime"]
    assert "tensorrt" in m["versions"]


def test_gpus_from_nvidia_smi(monkeypatch, tmp_path):
    path = _fake_smi(tmp_path, 'echo "NVIDIA Orin, 540.3, 30536 MiB"')
    monkeypatch.setenv("PATH", path + os.pathsep + os.environ["PATH"])
    assert machine.gpus() == [
        {"name": "NVIDIA Orin", "driver_version": "540.3", "memory.total": "30536 MiB"}
    ]


def test_a_failing_nvidia_smi_is_no_gpu(monkeypatch, tmp_path):
    path = _fake_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    monkeypatch.setenv("PATH", path + os.pathsep + os.environ["PATH"])
    assert machine.gpus() == []


def test_opencv_version_is_the_loaded_cv2s(monkeypatch):
    """A Jetson's system OpenCV has no pip metadata: the loaded module says its version."""
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="4.8.0"))
    assert machine.opencv_version() == "4.8.0"
    assert describe_machine()["versions"]["opencv"] == "4.8.0"
