"""The class mask drawn over the frame, and its legend."""

import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.tasks.segment.draw import draw_legend, overlay
from edgevision.tasks.segment.postprocess import palette


@pytest.fixture
def scene():
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:30, 10:50] = 1
    mask[40:, :] = 2
    mask[:, 70:] = 255  # unseen
    return frame, mask


def test_overlay_blends_classes_and_leaves_background_and_unseen_alone(scene):
    frame, mask = scene
    before = frame.copy()
    colours = palette(3)
    out = overlay(frame, mask, colours, alpha=0.45)
    np.testing.assert_array_equal(frame, before)  # a copy
    assert out.shape == frame.shape and out.dtype == np.uint8
    keep = (mask == 0) | (mask == 255)
    np.testing.assert_array_equal(out[keep], frame[keep])
    for k in (1, 2):
        where = mask == k
        expected = 0.55 * frame[where].astype(float) + 0.45 * colours[k].astype(float)
        assert np.abs(out[where] - expected).max() <= 1.0


def test_overlay_options(scene):
    frame, mask = scene
    colours = palette(3)
    painted_bg = overlay(frame, mask, colours, skip=())
    assert not np.array_equal(painted_bg[mask == 0], frame[mask == 0])
    assert np.array_equal(painted_bg[mask == 255], frame[mask == 255])  # 255 never
    solid = overlay(frame, mask, [(0, 0, 255)] * 3, alpha=1.0, skip=(0, 2))  # a list of tuples
    assert (solid[mask == 1] == [0, 0, 255]).all()
    assert np.array_equal(solid[mask == 2], frame[mask == 2])
    short = overlay(frame, mask, colours[:2])  # class 2 has no colour: left as it is
    assert np.array_equal(short[mask == 2], frame[mask == 2])
    assert np.array_equal(overlay(frame, mask, colours, alpha=0.0), frame)
    grey = overlay(frame[:, :, 0], mask, colours)  # a grey frame is drawn on in colour
    assert grey.shape == (60, 80, 3)


def test_overlay_refuses_what_does_not_fit(scene):
    frame, mask = scene
    with pytest.raises(ConfigError, match="cannot be drawn on a frame"):
        overlay(frame, mask[:30], palette(3))
    with pytest.raises(ConfigError, match="cannot be drawn on a frame"):
        overlay(frame, mask.astype(np.int32), palette(3))
    with pytest.raises(ConfigError, match="palette"):
        overlay(frame, mask, np.zeros((3, 4), np.uint8))
    with pytest.raises(ConfigError, match="alpha"):
        overlay(frame, mask, palette(3), alpha=1.5)


def test_legend_in_the_top_right_corner():
    img = np.zeros((240, 320, 3), np.uint8)
    labels = ("background", "road", "car")
    out = draw_legend(img, labels, palette(3), areas={"background": 0.5, "road": 0.4, "car": 0.1})
    assert not img.any()  # a copy
    changed = out.any(axis=2)
    assert changed[:60, 160:].any() and not changed[120:].any() and not changed[:, :100].any()
    road = tuple(int(c) for c in palette(3)[1])
    assert (out == road).all(axis=2).sum() > 20  # the road's swatch


def test_legend_areas_forms_and_rows():
    img = np.zeros((240, 320, 3), np.uint8)
    labels = ("bg", "a", "b")
    by_name = draw_legend(img, labels, palette(3), {"bg": 0.7, "a": 0.0, "b": 0.3})
    by_index = draw_legend(img, labels, palette(3), np.array([0.7, 0.0, 0.3]))
    np.testing.assert_array_equal(by_name, by_index)
    plain = draw_legend(img, labels, palette(3))  # names only, all labels
    rows = lambda x: int(x.any(axis=(1, 2)).sum())  # noqa: E731
    assert rows(plain) > rows(by_name)  # 'a' (0 %) is left out with areas
    assert not draw_legend(img, labels, palette(3), [0, 0, 0]).any()  # nothing present
    with pytest.raises(ConfigError, match="2 areas for 3 labels"):
        draw_legend(img, labels, palette(3), [0.5, 0.5])
