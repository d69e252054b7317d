"""A detection bundle in the runtime: boxes on the frame, tracks, track events, sinks, CLI.

The detector is `tests.helpers.square_detector_onnx` (a real ONNX graph that finds a bright
square), so everything here runs torch-free under ONNX Runtime.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevision.cli.app import main
from edgevision.runtime import Pipeline, make_sink
from edgevision.runtime.detect import DetectionHead, count_by_label
from edgevision.runtime.sinks.draw import annotate
from edgevision.spec import ModelSpec
from tests.helpers import detection_bundle, square_clip

FPS = 15.0


@pytest.fixture
def det_bundle(tmp_path):
    return detection_bundle(tmp_path)


@pytest.fixture
def moving(tmp_path):
    return square_clip(tmp_path / "square.mp4", fps=FPS)


def test_boxes_land_on_the_frame_and_one_track_follows_the_square(det_bundle, moving, tmp_path):
    results = list(Pipeline(det_bundle, moving, threads=1))
    assert len(results) == 24
    seen = [r for r in results if r.objects]
    assert [r.frame_index for r in seen] == list(range(2, 18))
    for r in seen:
        (obj,) = r.objects
        x = 8 + 6 * r.frame_index  # the square's left edge in the 192x128 frame
        assert obj["label"] == "square" and obj["score"] == pytest.approx(0.9)
        # the model saw a 96x64 stretch of the frame: its box is mapped back (x2, y2)
        assert obj["box"] == pytest.approx([x, 40, x + 24, 64], abs=2.5)
    tracked = [r.objects[0]["track"] for r in seen]
    assert tracked[0] is None and set(tracked[1:]) == {1}  # confirmed at its second frame
    events = [e for r in results for e in r.events]
    appeared = [e for e in events if e["event"] == "appeared"]
    assert len(appeared) == 1 and appeared[0]["track"] == 1
    assert appeared[0]["first_seen"] == pytest.approx(2 / FPS, abs=1e-5)  # media time of the clip


def test_track_events_file_with_a_left_event_and_frames_mode(det_bundle, moving, tmp_path):
    tracks, frames = tmp_path / "tracks.jsonl", tmp_path / "frames.jsonl"
    sinks = [make_sink("jsonl", tracks), make_sink("jsonl", frames, mode="frames")]
    Pipeline(det_bundle, moving, sinks=sinks, threads=1).run()
    events = [json.loads(line) for line in tracks.read_text().splitlines()]
    assert [e["event"] for e in events] == ["appeared", "left"]
    left = events[1]
    assert left["track"] == 1 and left["label"] == "square" and left["frames"] == 16
    assert left["first_seen"] == pytest.approx(2 / FPS, abs=1e-5) and left[
        "last_seen"
    ] == pytest.approx(17 / FPS, abs=1e-5)
    assert left["best_score"] == pytest.approx(0.9) and len(left["box"]) == 4
    lines = [json.loads(line) for line in frames.read_text().splitlines()]
    per_frame = [ln for ln in lines if "frame" in ln]
    assert len(per_frame) == 24 and per_frame[5]["objects"][0]["track"] == 1
    assert sum(len(ln.get("events", [])) for ln in per_frame) == 1  # appeared (left: at end)


def test_the_square_leaving_ends_its_track_when_max_age_passes(det_bundle, tmp_path):
    from edgevision.tasks.detect.track import TrackerConfig

    clip = square_clip(tmp_path / "gone.mp4", frames=40, visible=range(2, 10), fps=FPS)
    tracker = TrackerConfig(max_age_s=0.5)
    results = list(Pipeline(det_bundle, clip, threads=1, tracker=tracker))
    left = [(r.frame_index, e) for r in results for e in r.events if e["event"] == "left"]
    assert len(left) == 1
    frame, event = left[0]
    assert event["last_seen"] == pytest.approx(9 / FPS, abs=1e-5)
    assert (frame - 9) / FPS > 0.5 and (frame - 10) / FPS <= 0.5  # the first frame past it


def test_no_tracking_reports_detections_only(det_bundle, moving):
    results = list(Pipeline(det_bundle, moving, threads=1, tracking=False))
    assert all(o["track"] is None for r in results for o in r.objects)
    assert not any(r.events for r in results)
    assert results[5].label == "square" and results[0].label == "none"


def test_stage_timings_include_nms_and_tracking(det_bundle, moving):
    summary = Pipeline(det_bundle, moving, threads=1).run()
    stages = summary.stages()
    assert {"postprocess.nms", "postprocess.track"} <= set(stages)
    assert stages["postprocess.track"]["p50"] > 0


def test_video_overlay_draws_the_boxes(det_bundle, moving, tmp_path):
    results = list(Pipeline(det_bundle, moving, threads=1))
    r = results[6]
    drawn = annotate(r.image, r, fps=15.0)
    x0, y0, x1, y1 = (int(v) for v in r.objects[0]["box"])
    outline = drawn[y0 - 1 : y1 + 2, x0 - 1 : x1 + 2]
    assert not np.array_equal(outline, r.image[y0 - 1 : y1 + 2, x0 - 1 : x1 + 2])
    assert count_by_label(r.objects) == {"square": 1}


def test_head_refuses_outputs_without_boxes():
    from edgevision.errors import ConfigError

    spec = ModelSpec(labels=("a",), task="detection", input_size=(8, 8))
    head = DetectionHead(spec)
    with pytest.raises(ConfigError, match="lack 'boxes'"):
        head({"logits": np.zeros((1, 1))}, (8, 8), 0.0)


def _two_labels_on_one_box():
    spec = ModelSpec(labels=("50", "80"), task="detection", input_size=(64, 64))
    boxes = np.array([[[8, 8, 40, 40], [9, 8, 40, 41], [0, 0, 1, 1]]], np.float32)
    scores = np.array([[[0.7, 0.1], [0.1, 0.6], [0.0, 0.0]]], np.float32)
    return spec, {"boxes": boxes, "scores": scores}


def test_head_keeps_one_label_per_object_by_default_so_one_track_per_sign():
    spec, outputs = _two_labels_on_one_box()
    head = DetectionHead(spec)
    for i in range(4):
        frame = head(outputs, (64, 64), i / 15)
        (obj,) = frame.objects
        assert obj["label"] == "50" and obj["score"] == pytest.approx(0.7)
    assert obj["track"] == 1 and [e["track"] for e in frame.events] == []
    # class-aware NMS (COCO's): the hesitation is reported as a second object, and tracked
    head = DetectionHead(spec, nms="per-class")
    for i in range(4):
        frame = head(outputs, (64, 64), i / 15)
    assert sorted(o["label"] for o in frame.objects) == ["50", "80"]
    assert sorted(o["track"] for o in frame.objects) == [1, 2]


def test_head_refuses_an_unknown_nms_mode():
    from edgevision.errors import ConfigError

    spec, _ = _two_labels_on_one_box()
    with pytest.raises(ConfigError, match="'classwise' is not an NMS mode"):
        DetectionHead(spec, nms="classwise")


def test_cli_run_writes_track_events_and_video(det_bundle, moving, tmp_path, capsys):
    events, video = tmp_path / "tracks.jsonl", tmp_path / "out.mp4"
    args = [det_bundle, "--source", moving, "--events", events, "--video", video, "--threads", "1"]
    with pytest.raises(SystemExit) as info:
        main(["run", *map(str, args)])
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds == ["appeared", "left"] and video.stat().st_size > 0
    # a status line at most once a second: a short clip may print only frame 0's (the count
    # per class is tested on the sink itself, test_sinks.py)
    assert "frame      0" in out and "FPS" in out


def test_cli_run_refuses_an_unknown_nms_mode_before_reading_the_source(
    det_bundle, moving, tmp_path, capsys
):
    events = tmp_path / "tracks.jsonl"
    args = [det_bundle, "--source", moving, "--events", events, "--nms", "classwise"]
    with pytest.raises(SystemExit) as info:
        main(["run", *map(str, args)])
    captured = capsys.readouterr()
    assert info.value.code != 0 and "not an NMS mode" in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err and not events.exists()
