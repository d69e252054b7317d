"""Drawing boxes and tags: copies, clipping, odd boxes that must not stop a video."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.tasks.detect.draw import TRUTH_COLOR, draw_detections, draw_truth, palette

NAMES = ["car", "sign"]


@pytest.fixture
def frame() -> np.ndarray:
    return np.zeros((120, 160, 3), np.uint8)


def test_palette_is_deterministic_distinct_bgr():
    colors = palette(12)
    assert colors == palette(12) and len(set(colors)) == 12
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colors)
    assert all(not (g > b + 60 and g > r + 60) for b, g, r in colors)  # green is the truth's
    assert palette(0) == []
    with pytest.raises(ConfigError):
        palette(-1)


def test_box_edges_are_drawn_and_input_is_untouched(frame):
    before = frame.copy()
    out = draw_detections(frame, [[40.4, 50.6, 120.2, 100.0]], [1], NAMES, scores=[0.93])
    assert np.array_equal(frame, before)
    assert out is not frame and out.shape == frame.shape
    assert tuple(out[75, 40]) == palette(2)[1]  # left edge
    assert tuple(out[100, 80]) == palette(2)[1]  # bottom edge
    assert not out[80, 80].any()  # the inside of the box stays clear
    assert out[35:50, 40:100].any()  # the tag above the box


def test_tag_text_includes_track_id_and_score(frame, monkeypatch):
    import edgevision.tasks.detect.draw as draw

    seen: list[str] = []
    real = draw._tag
    monkeypatch.setattr(
        draw, "_tag", lambda img, text, *a: (seen.append(text), real(img, text, *a))
    )
    draw_detections(
        frame, [[10, 10, 50, 50], [60, 60, 90, 90]], [0, 1], NAMES, [0.5, 0.25], [7, -1]
    )
    assert seen == ["#7 car 0.50", "sign 0.25"]


def test_fixed_colour_and_thickness(frame):
    out = draw_detections(frame, [[20, 20, 80, 80]], [0], NAMES, color=(1, 2, 3), thickness=4)
    assert tuple(out[50, 18]) == tuple(out[50, 21]) == (1, 2, 3)  # OpenCV centres the line
    assert not out[50, 24].any()


def test_empty_and_outside_boxes_do_not_crash(frame):
    assert np.array_equal(draw_detections(frame, np.zeros((0, 4)), [], NAMES), frame)
    outside = [[-50, -50, -10, -10], [500, 500, 600, 600], [np.nan, 0, 10, 10]]
    assert np.array_equal(draw_detections(frame, outside, [0, 1, 0], NAMES), frame)
    partial = draw_detections(frame, [[-30, -30, 60, 300]], [5], NAMES, scores=[0.9])
    assert partial[:, 60].any() and partial[119, :60].any()  # clipped to the frame's edges


def test_mismatched_lengths_are_clear_errors(frame):
    with pytest.raises(ConfigError, match="1 labels for 2 boxes"):
        draw_detections(frame, [[0, 0, 5, 5], [1, 1, 6, 6]], [0], NAMES)
    with pytest.raises(ConfigError, match="2 scores for 1 boxes"):
        draw_detections(frame, [[0, 0, 5, 5]], [0], NAMES, scores=[0.1, 0.2])
    with pytest.raises(ConfigError, match="expected \\(N, 4\\)"):
        draw_detections(frame, [[0, 0, 5]], [0], NAMES)


def test_truth_boxes_are_thin_green(frame):
    out = draw_truth(frame, [[20, 20, 100, 60]], [0], NAMES)
    assert tuple(out[40, 20]) == TRUTH_COLOR
    assert not out[40, 22].any()  # one pixel wide
    assert out[62:80, 20:60].any()  # the name below the box
    assert np.array_equal(draw_truth(frame, [], [], NAMES), frame)


def test_grayscale_frames_are_drawn_in_colour():
    out = draw_detections(np.zeros((50, 50), np.uint8), [[5, 5, 40, 40]], [0], NAMES)
    assert out.shape == (50, 50, 3)
