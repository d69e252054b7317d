"""Areas, free distance and colours read off a class mask."""

import numpy as np
import pytest

from edgevision.errors import ConfigError, DataError
from edgevision.tasks.segment.postprocess import (
    BACKGROUND_COLOR,
    area_fractions,
    class_counts,
    free_distance,
    palette,
)


def test_area_fractions_are_shares_of_the_seen_pixels():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :5] = 255  # half the frame unseen
    mask[:2, 5:] = 1  # 10 of the 50 seen pixels
    mask[9, 9] = 2
    shares = area_fractions(mask, 3)
    assert shares.dtype == np.float64 and shares.shape == (3,)
    np.testing.assert_allclose(shares, [39 / 50, 10 / 50, 1 / 50])
    assert shares.sum() == pytest.approx(1.0)


def test_area_fractions_edge_cases():
    assert area_fractions(np.full((4, 4), 255, np.uint8), 3).tolist() == [0.0, 0.0, 0.0]
    mask = np.array([[0, 1], [7, 255]], np.uint8)  # id 7 is no class but was seen
    np.testing.assert_allclose(area_fractions(mask, 2), [1 / 3, 1 / 3])
    # another ignore value: 7 is left out, 255 is then seen (in no class)
    np.testing.assert_allclose(area_fractions(mask, 2, ignore=7), [1 / 3, 1 / 3])
    with pytest.raises(ConfigError, match="n_classes"):
        area_fractions(mask, 0)
    with pytest.raises(DataError, match="2-D uint8"):
        area_fractions(mask.astype(np.int64), 2)
    with pytest.raises(DataError, match="2-D uint8"):
        area_fractions(np.zeros((2, 2, 3), np.uint8), 2)


def test_class_counts_match_bincount_also_on_a_view():
    mask = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    view = mask[::2, 1::3]
    for m in (mask, view):
        np.testing.assert_array_equal(class_counts(m), np.bincount(m.ravel(), minlength=256))


def test_free_distance_runs_up_the_centre_column_from_the_bottom():
    mask = np.zeros((100, 9), np.uint8)
    assert free_distance(mask, 0) == 1.0  # the whole column
    assert free_distance(mask, 1) == 0.0  # the bottom pixel is not the class
    mask[70:, 4] = 1  # 30 rows of road in the centre column (index 9 // 2 = 4)
    mask[:, 3] = 1  # the other columns do not matter
    assert free_distance(mask, 1) == pytest.approx(0.3)
    mask[40:60, 4] = 1  # road further up, past an obstacle: not reachable
    assert free_distance(mask, 1) == pytest.approx(0.3)
    mask[85, 4] = 255  # an unseen pixel ends the run too
    assert free_distance(mask, 1) == pytest.approx(0.14)


def test_palette_is_deterministic_distinct_bgr():
    colours = palette(40)
    assert colours.shape == (40, 3) and colours.dtype == np.uint8
    assert len({tuple(c) for c in colours}) == 40
    assert tuple(colours[0]) == BACKGROUND_COLOR
    np.testing.assert_array_equal(palette(40), colours)
    np.testing.assert_array_equal(palette(5), colours[:5])  # a class keeps its colour
    # neighbouring classes are far apart (no two consecutive ids look alike)
    diffs = np.abs(colours[1:].astype(int) - colours[:-1].astype(int)).sum(axis=1)
    assert diffs.min() > 60
    assert palette(0).shape == (0, 3)


@pytest.mark.parametrize("n", [-1, 2.5, True, "3"])
def test_palette_refuses_a_bad_size(n):
    with pytest.raises(ConfigError, match="palette size"):
        palette(n)
