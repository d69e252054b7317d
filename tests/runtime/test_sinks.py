"""Sinks: events, annotated video, window (headless), console; the registry."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest

from edgevision.errors import RegistryError, SinkError
from edgevision.runtime import SINKS, Result, StreamInfo, make_sink
from edgevision.runtime.sinks.draw import RateMeter, annotate
from edgevision.runtime.sinks.window import check_display, opencv_gui

INFO = StreamInfo("test://", 15.0, ("a", "b"), "ort:fp32")


def result(i: int, size=(48, 64), known=True) -> Result:
    image = np.full((*size, 3), 100, np.uint8)
    return Result(
        i,
        1.0 + i,
        1e9,
        "a" if known else "unknown",
        0.8,
        [("a", 0.8), ("b", 0.2)],
        5.0,
        1.0,
        known,
        {"infer": 2.0},
        {"truth": {"label": "a"}},
        image,
    )


def test_registry_names_and_unknown():
    assert SINKS.names() == ["jsonl", "masks", "stdout", "video", "window"]
    with pytest.raises(RegistryError, match="unknown sink 'printer'"):
        make_sink("printer")


def test_jsonl_writes_one_complete_line_per_result(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    sink = make_sink("jsonl", path)
    sink.open(INFO)
    for i in range(3):
        sink.write(result(i))
        # Flushed as written: a reader sees whole lines while the run goes on.
        assert path.read_text().count("\n") == i + 1
    sink.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["frame"] for e in events] == [0, 1, 2]
    e = events[0]
    assert e["label"] == "a" and e["topk"] == [["a", 0.8], ["b", 0.2]] and e["known"] is True
    assert e["latency_ms"] == 5.0 and e["meta"]["truth"]["label"] == "a"
    assert {"capture_ts", "time", "age_ms", "timings_ms", "score"} <= set(e)


def test_jsonl_unwritable_path_is_a_sink_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write events"):
        make_sink("jsonl", blocker / "events.jsonl").open(INFO)


def test_video_is_complete_playable_and_renamed_on_close(tmp_path):
    path = tmp_path / "out.mp4"
    sink = make_sink("video", path)
    sink.open(INFO)
    for i in range(5):
        sink.write(result(i, size=(48, 64) if i != 3 else (60, 80)))  # one odd size: resized
    assert not path.exists()  # only the temporary file while writing
    sink.close()
    assert path.exists() and not list(tmp_path.glob(".out.partial*"))
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)
    # The overlay is drawn: the top-left corner is no longer flat grey.
    assert frames[0][:12, :40].std() > 5


def test_video_needs_a_video_extension(tmp_path):
    with pytest.raises(SinkError, match="no video extension"):
        make_sink("video", tmp_path / "out.txt").open(INFO)


def test_window_says_why_it_cannot_open(monkeypatch):
    if opencv_gui().upper() == "NONE":
        with pytest.raises(SinkError, match="no GUI support") as info:
            make_sink("window").open(INFO)
        assert "--video" in info.value.fix
    else:  # a GUI build: without a display it must still say so
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        with pytest.raises(SinkError, match="no display"):
            check_display()


def test_console_prints_at_most_once_per_interval():
    out = io.StringIO()
    sink = make_sink("stdout", interval=60.0, stream=out)
    sink.open(INFO)
    for i in range(10):
        sink.write(result(i))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "frame      0" in lines[0] and "latency" in lines[0]


def test_console_counts_a_detectors_objects_per_class():
    import dataclasses

    out = io.StringIO()
    sink = make_sink("stdout", stream=out)
    sink.open(INFO)
    objects = [{"label": "b"}, {"label": "a"}, {"label": "b"}]
    sink.write(dataclasses.replace(result(0), objects=objects))
    sink.write(dataclasses.replace(result(1), objects=[]))  # within the interval: not printed
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "2 b, 1 a" in lines[0]
    sink = make_sink("stdout", interval=0.0, stream=out)
    sink.write(dataclasses.replace(result(2), objects=[]))
    assert "frame      2  no objects" in out.getvalue()


def test_annotate_and_rate_meter():
    meter = RateMeter(window=5)
    assert meter.tick(0.0) == 0.0
    for t in (0.1, 0.2, 0.3):
        fps = meter.tick(t)
    assert fps == pytest.approx(10.0)
    image = np.zeros((120, 160, 3), np.uint8)
    out = annotate(image, result(0, size=(120, 160), known=False), 12.5)
    assert out.shape == image.shape and out.any() and not image.any()


SEG_INFO = StreamInfo(
    "test://", 15.0, ("background", "road", "sign"), "ort:fp32", task="segmentation"
)


def seg_result(i: int, size=(48, 64)) -> Result:
    r = result(i, size)
    mask = np.zeros(size, np.uint8)
    mask[size[0] // 2 :, :] = 1  # the lower half is road
    mask[2:10, 2:10] = 2
    r.mask = mask
    r.segmentation = {
        "areas": {"background": 0.48, "road": 0.5, "sign": 0.02},
        "free_distance": 0.5,
    }
    return r


def test_mask_sink_writes_index_pngs_every_n_frames_and_never_replaces_files(tmp_path):
    sink = make_sink("masks", tmp_path / "masks", every=2)
    sink.open(SEG_INFO)
    for i in range(5):
        sink.write(seg_result(i))
    sink.close()
    files = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert files == ["000000.png", "000002.png", "000004.png"]  # no temp files left
    back = cv2.imread(str(tmp_path / "masks" / "000002.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and back.shape == (48, 64)
    assert np.array_equal(back, seg_result(2).mask)
    again = make_sink("masks", tmp_path / "masks")
    with pytest.raises(SinkError, match="already holds PNG files"):
        again.open(SEG_INFO)
    with pytest.raises(SinkError, match="needs a segmentation bundle"):
        make_sink("masks", tmp_path / "other").open(INFO)
    with pytest.raises(SinkError, match="--mask-every 0"):
        make_sink("masks", tmp_path / "x", every=0)


def test_segmentation_results_are_drawn_and_written_as_events(tmp_path):
    r = seg_result(0, size=(240, 320))
    drawn = annotate(r.image, r, 15.0)
    assert drawn.shape == r.image.shape
    road = drawn[200:, 150:]  # the road half is tinted, the background left as it was
    assert (road != 100).all() and np.array_equal(
        drawn[100:110, 200:300], r.image[100:110, 200:300]
    )
    event = r.to_event()
    assert event["segmentation"]["areas"]["road"] == 0.5 and "mask" not in event
    sink = make_sink("jsonl", tmp_path / "e.jsonl")
    sink.open(SEG_INFO)
    assert sink.mode == "frames"
    sink.write(r)
    sink.close()
    line = json.loads((tmp_path / "e.jsonl").read_text())
    assert line["segmentation"]["free_distance"] == 0.5
    out = io.StringIO()
    console = make_sink("stdout", stream=out)
    console.open(SEG_INFO)
    console.write(r)
    assert "road 50%" in out.getvalue() and "free 50%" in out.getvalue()
