"""`edgevision run`: the command, its errors, SIGTERM, and a bare (torch-free) install."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edgevision.cli.app import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["run", *map(str, args)])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.grab():
        n += 1
    cap.release()
    return n


def test_run_a_clip_to_events_and_video(bundle, clip, tmp_path, capsys):
    events, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    code, out, _ = run_cli(
        [
            bundle,
            "--source",
            clip,
            "--events",
            events,
            "--video",
            video,
            "--threads",
            "1",
            "--threshold",
            "0.1",
            "--smooth",
            "3",
            "--topk",
            "2",
        ],
        capsys,
    )
    assert code in (0, None)
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(12))
    assert all(len(e["topk"]) == 2 for e in lines)
    assert count_frames(video) == 12
    assert "processed" in out and "end of source" in out


def test_max_frames_and_quiet(bundle, tmp_path, capsys):
    events = tmp_path / "e.jsonl"
    code, out, _ = run_cli(
        [
            bundle,
            "--source",
            "synthetic://?fps=60&size=64x48",
            "--max-frames",
            "4",
            "--events",
            events,
            "--quiet",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code in (0, None)
    assert len(events.read_text().splitlines()) == 4
    assert "FPS  latency" not in out and "max frames" in out


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("/dev/video99", [], "no such video device /dev/video99"),
        ("missing.mp4", [], "does not exist"),
        ("synthetic://?fps=0", [], "fps=.*invalid"),
        ("synthetic://", ["--backend", "cuda"], "unknown backend 'cuda'"),
        ("synthetic://", ["--events", "/proc/x/e.jsonl"], "--events /proc/x/e.jsonl cannot be"),
        ("synthetic://", ["--video", "/"], "--video / is a folder"),
    ],
)
def test_errors_are_one_message_and_exit_2(bundle, source, extra, message, capsys):
    code, _, err = run_cli([bundle, "--source", source, *extra], capsys)
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    assert re.search(message, " ".join(err.split()))
    assert len(err.strip().splitlines()) <= 2  # an error line (and a fix line), however long


def test_show_on_headless_opencv_is_a_clear_error(bundle, clip, capsys):
    from edgevision.runtime.sinks.window import opencv_gui

    if opencv_gui().upper() != "NONE" and os.environ.get("DISPLAY"):
        pytest.skip("this OpenCV can show windows here")
    code, _, err = run_cli([bundle, "--source", clip, "--show"], capsys)
    assert code == 2 and ("no GUI support" in err or "no display" in err)


def test_the_command_module_imports_nothing_heavy():
    code = (
        "import sys, edgevision.cli.run; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'cv2', 'edgevision.runtime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_sigterm_flushes_and_closes_every_sink(bundle, tmp_path):
    events, video = tmp_path / "e.jsonl", tmp_path / "v.mp4"
    cmd = [
        sys.executable,
        "-m",
        "edgevision",
        "run",
        str(bundle),
        "--source",
        "synthetic://?fps=30&size=96x72",
        "--events",
        str(events),
        "--video",
        str(video),
        "--threads",
        "1",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if events.exists() and events.read_text().count("\n") >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    text = events.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # every line whole
    assert len(lines) >= 8
    assert [e["frame"] for e in lines] == sorted(e["frame"] for e in lines)
    # Both sinks saw every result: as many video frames as events, and the mp4 opens.
    assert count_frames(video) == len(lines)
    assert not list(tmp_path.glob(".v.partial*"))
    assert "SIGTERM received" in err and "stopped" in out


def base_requirements(extras: tuple[str, ...] = ()) -> list[str]:
    """Distribution names the installed edgevision requires, plus those of ``extras``."""
    names = []
    for req in importlib.metadata.requires("edgevision") or []:
        name, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra is None or extra.group(1) in extras:
            names.append(re.split(r"[\s<>=!~\[]", name.strip(), maxsplit=1)[0])
    return names


@pytest.mark.slow
def test_runs_in_a_bare_venv_without_torch(bundle, clip, tmp_path):
    """The base package alone (no OpenCV: a Jetson brings its own) says so in one line and
    `edgevision doctor` reports it; with the `opencv` extra `edgevision run` works; torch never
    arrives."""
    venv = tmp_path / "venv"
    # No pip inside: this interpreter's pip installs into it (--python), without byte-compiling;
    # the same versions as here, so pip takes them from its cache.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    base, opencv = base_requirements(), base_requirements(extras=("opencv",))
    assert "torch" not in opencv and not any(name.startswith("opencv") for name in base)
    assert set(opencv) - set(base) == {"opencv-python-headless"}
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-compile"]
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True, capture_output=True)
    pins = {name: f"{name}=={importlib.metadata.version(name)}" for name in opencv}
    subprocess.run([*pip, *(pins[name] for name in base)], check=True, capture_output=True)
    events = tmp_path / "bare.jsonl"
    args = [bundle, "--source", clip, "--events", events, "--threads", "1", "--quiet"]
    cmd = [str(venv / "bin" / "edgevision"), "run", *map(str, args)]
    env = {**os.environ, "COLUMNS": "400"}
    no_cv2 = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert no_cv2.returncode == 2, no_cv2.stderr
    assert no_cv2.stderr.startswith(
        "error: OpenCV (cv2) cannot be imported: No module named 'cv2'\n"
        "fix: `pip install 'edgevision[opencv]'`"
    ), no_cv2.stderr
    doctor = [str(venv / "bin" / "edgevision"), "doctor", "--json", str(tmp_path / "d.json")]
    no_cv2 = subprocess.run(doctor, capture_output=True, text=True, timeout=120, env=env)
    assert no_cv2.returncode == 0, no_cv2.stderr
    assert "OpenCV (cv2) cannot be imported: No module named 'cv2'" in no_cv2.stdout
    subprocess.run([*pip, pins["opencv-python-headless"]], check=True, capture_output=True)
    no_torch = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(events.read_text().splitlines()) == 12
    # a detection bundle too: NMS, the tracker and its track events, still without torch
    from tests.helpers import detection_bundle, square_clip

    det, moving = detection_bundle(tmp_path / "det"), square_clip(tmp_path / "square.mp4")
    tracks = tmp_path / "tracks.jsonl"
    args = [det, "--source", moving, "--events", tracks, "--threads", "1", "--quiet"]
    run = subprocess.run(
        [str(venv / "bin" / "edgevision"), "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    kinds = [json.loads(line)["event"] for line in tracks.read_text().splitlines()]
    assert kinds == ["appeared", "left"]
    # and a segmentation bundle: the class map onto each frame, areas, mask PNGs, no torch
    from tests.segment_helpers import segmentation_bundle

    seg = segmentation_bundle(tmp_path / "seg")
    frames, masks = tmp_path / "seg.jsonl", tmp_path / "masks"
    args = [seg, "--source", moving, "--events", frames, "--masks", masks, "--mask-every", "6"]
    run = subprocess.run(
        [str(venv / "bin" / "edgevision"), "run", *map(str, args), "--threads", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in frames.read_text().splitlines()]
    assert len(lines) == 24 and set(lines[5]["segmentation"]["areas"]) == {"background", "square"}
    assert lines[5]["segmentation"]["areas"]["square"] > 0  # the white square is on frame 5
    assert sorted(p.name for p in masks.iterdir()) == [f"{i:06d}.png" for i in (0, 6, 12, 18)]
