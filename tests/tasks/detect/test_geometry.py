"""Boxes follow the pixels through every resize mode, both ways."""

import numpy as np
import pytest

from edgevision.preprocess import resize
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.geometry import box_transform, valid_boxes


def _white_extent(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img[:, :, 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
@pytest.mark.parametrize(("frame_w", "frame_h"), [(320, 240), (240, 320), (500, 200)])
def test_a_box_on_the_frame_lands_on_its_pixels_in_the_input(mode, frame_w, frame_h):
    spec = ModelSpec(labels=("a",), task="detection", input_size=(192, 256), resize=mode)
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    box = np.array([[frame_w * 0.3, frame_h * 0.35, frame_w * 0.6, frame_h * 0.7]], np.float32)
    x0, y0, x1, y1 = box[0].round().astype(int)
    frame[y0:y1, x0:x1] = 255
    exact = np.array([[x0, y0, x1, y1]], np.float32)
    mapped = box_transform(spec, frame_w, frame_h).to_input(exact)[0]
    seen = _white_extent(resize(frame, spec))
    assert np.abs(mapped - seen).max() <= 1.0, (mapped, seen)


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
def test_to_frame_inverts_to_input(mode):
    spec = ModelSpec(labels=("a",), task="detection", input_size=(160, 224), resize=mode)
    t = box_transform(spec, 640, 360)
    boxes = np.array([[300, 100, 360, 200], [250, 150, 260, 170]], np.float32)
    back = t.to_frame(t.to_input(boxes))
    assert np.allclose(back, boxes, atol=1e-3)


def test_boxes_are_clipped_to_the_input_and_tiny_ones_flagged():
    spec = ModelSpec(labels=("a",), task="detection", input_size=(100, 100), resize="center_crop")
    t = box_transform(spec, 400, 100)  # the crop cuts the sides away
    out = t.to_input(np.array([[0, 10, 50, 90], [180, 10, 220, 90]], np.float32))
    assert out[:, 0::2].min() >= 0 and out[:, 0::2].max() <= 100
    assert valid_boxes(out).tolist() == [False, True]  # the first box was cut off entirely
